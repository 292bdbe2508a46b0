// Reading a data file whole, gunzipping it when it is gzip'd. Detection is by content (the gzip magic
// 1f 8b), not by name, so "train-images-idx3-ubyte" works whether or not it was compressed, and a
// dictzip file (.dict.dz, which is gzip with an extra header field) reads like any other gzip file.
#pragma once
#include <string>

namespace dtrain::data {

// The file's bytes, decompressed when they start with the gzip magic. Concatenated gzip members are
// read one after another, as gunzip does. Errors are one line naming the file; `hint` (e.g. "re-install
// dataset-fashion-mnist or pass --data-dir") is appended to say what to do about a missing, truncated
// or corrupt file.
std::string read_file_bytes(const std::string& path, const std::string& hint = "");

// Whether anything is at `path` (a broken or looping link counts: reading it then says why), and whether
// it is a directory; neither throws (std::filesystem's throwing forms raise on a symlink loop).
bool entry_exists(const std::string& path);
bool is_directory_entry(const std::string& path);

// True when `bytes` start with the gzip magic.
bool is_gzip(const std::string& bytes);

// "message; hint", or just the message when there is no hint.
std::string with_hint(const std::string& message, const std::string& hint);

}  // namespace dtrain::data
