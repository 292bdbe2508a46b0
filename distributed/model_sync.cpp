#include "distributed/model_sync.h"

#include <cstring>
#include <sstream>

namespace dtrain::dist {

namespace {

// "kind\tname\tshape\tdtype" split back into a readable "parameter 'name' [2, 3] f32".
struct Entry {
  std::string kind, name, shape, dtype;
};

Entry parse(const std::string& line) {
  Entry e;
  std::istringstream s(line);
  std::getline(s, e.kind, '\t');
  std::getline(s, e.name, '\t');
  std::getline(s, e.shape, '\t');
  std::getline(s, e.dtype, '\t');
  return e;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream s(text);
  std::string line;
  while (std::getline(s, line)) lines.push_back(line);
  return lines;
}

// The first difference between rank 0's lines and rank r's, as a sentence.
std::string first_difference(const std::vector<std::string>& a, const std::vector<std::string>& b,
                             int r) {
  const std::string r0 = "rank 0", rr = "rank " + std::to_string(r);
  for (size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
    if (i < a.size() && i < b.size() && a[i] == b[i]) continue;
    if (i >= b.size()) {
      Entry e = parse(a[i]);
      return detail::concat(r0, " has ", e.kind, " '", e.name, "' ", e.shape, " ", e.dtype,
                            " where ", rr, " has no more tensors (", a.size(), " vs ", b.size(),
                            " tensors)");
    }
    if (i >= a.size()) {
      Entry e = parse(b[i]);
      return detail::concat(rr, " has ", e.kind, " '", e.name, "' ", e.shape, " ", e.dtype,
                            " where ", r0, " has no more tensors (", a.size(), " vs ", b.size(),
                            " tensors)");
    }
    Entry x = parse(a[i]), y = parse(b[i]);
    if (x.kind == y.kind && x.name == y.name) {
      return detail::concat(x.kind, " '", x.name, "' is ", x.shape, " ", x.dtype, " on ", r0,
                            " but ", y.shape, " ", y.dtype, " on ", rr);
    }
    return detail::concat("tensor ", i, " is ", x.kind, " '", x.name, "' ", x.shape, " ", x.dtype,
                          " on ", r0, " but ", y.kind, " '", y.name, "' ", y.shape, " ", y.dtype,
                          " on ", rr);
  }
  return "";
}

}  // namespace

std::vector<std::string> model_signature(const nn::Module& module) {
  std::vector<std::string> lines;
  for (const auto& [name, t] : module.named_parameters()) {
    lines.push_back("parameter\t" + name + "\t" + shape_str(t.shape()) + "\t" +
                    dtype_name(t.dtype()));
  }
  for (const auto& [name, t] : module.named_buffers()) {
    lines.push_back("buffer\t" + name + "\t" + shape_str(t.shape()) + "\t" + dtype_name(t.dtype()));
  }
  return lines;
}

void check_same_model(ProcessGroup& pg, const nn::Module& module, const std::string& who) {
  std::string text;
  for (const std::string& line : model_signature(module)) text += line + "\n";
  // Pack the bytes into i64 words (8 per word) behind a length word, pad to the longest rank's, and
  // gather everyone's: each rank then finds the same first difference and throws the same message.
  const int64_t words = 1 + static_cast<int64_t>((text.size() + 7) / 8);
  const int64_t max_words =
      static_cast<int64_t>(all_reduce_value(pg, static_cast<double>(words), ReduceOp::max));
  std::vector<int64_t> packed(static_cast<size_t>(max_words), 0);
  packed[0] = static_cast<int64_t>(text.size());
  std::memcpy(packed.data() + 1, text.data(), text.size());
  std::vector<int64_t> all = all_gather_values(pg, packed);

  auto text_of = [&](int r) {
    const int64_t* base = all.data() + static_cast<size_t>(r) * static_cast<size_t>(max_words);
    return std::string(reinterpret_cast<const char*>(base + 1), static_cast<size_t>(base[0]));
  };
  const std::vector<std::string> reference = split_lines(text_of(0));
  for (int r = 1; r < pg.size(); ++r) {
    std::vector<std::string> lines = split_lines(text_of(r));
    if (lines == reference) continue;
    throw Error(detail::concat(who, ": the model on rank ", r,
                               " differs from rank 0: ", first_difference(reference, lines, r),
                               "; every rank must build the same model (same code, config and "
                               "options)"));
  }
}

void broadcast_module(ProcessGroup& pg, const nn::Module& module, int root) {
  std::vector<Tensor> tensors = module.parameters();
  for (const Tensor& b : module.buffers()) tensors.push_back(b);
  broadcast_coalesced(pg, tensors, root);
}

}  // namespace dtrain::dist
