#!/usr/bin/env python3
"""Writes the seed corpus of the parser fuzz harnesses (tests/fuzz/corpus/<parser>/...).

The seeds are small valid files plus a few legal edge cases (zero-size tensors, scalars, empty
headers, several gzip members, a dictzip header); the harnesses mutate them. Every seed must be
accepted by its parser: the harnesses assert that, so they cannot pass by rejecting everything.
Output is deterministic (gzip mtime 0), so re-running this script changes nothing unless it was
edited. Run it from anywhere: python3 tests/fuzz/make_corpus.py
"""
import gzip
import json
import os
import struct
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def write(parser, name, data):
    folder = os.path.join(ROOT, parser)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def gz(data, mtime=0):
    return gzip.compress(data, compresslevel=9, mtime=mtime)


# ---- safetensors: 8-byte LE header length, JSON header padded with spaces to 8, packed data.
def safetensors(tensors, metadata=None):
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def write_safetensors():
    write("safetensors", "two_tensors.safetensors", safetensors(
        [("weight", "F32", [2, 3], struct.pack("<6f", 1, -2, 3.5, 0, 1e-3, 7)),
         ("step", "I64", [2], struct.pack("<2q", 41, -1))], {"format": "pt"}))
    write("safetensors", "all_dtypes.safetensors", safetensors(
        [("f64", "F64", [2], struct.pack("<2d", 1.5, -0.25)),
         ("f16", "F16", [3], struct.pack("<3e", 1, 2, -3)),
         ("bf16", "BF16", [1, 2], b"\x80\x3f\x00\x40"),
         ("i32", "I32", [2, 1], struct.pack("<2i", 7, -7)),
         ("f32", "F32", [1], struct.pack("<f", 0.5))]))
    # A scalar (shape []) and an empty tensor (begin == end) next to each other.
    write("safetensors", "scalar_and_empty.safetensors", safetensors(
        [("scalar", "F32", [], struct.pack("<f", 3)), ("empty", "I64", [0, 4], b""),
         ("blocks.0.norm1.weight", "F32", [2], struct.pack("<2f", 1, 1))]))
    write("safetensors", "no_tensors.safetensors", safetensors([]))
    write("safetensors", "metadata_only.safetensors", safetensors([], {"k": "v", "unicode": "\u00e4\u4e2d"}))


# ---- IDX: 0 0 type ndims, big-endian u32 sizes, big-endian elements.
def idx(type_code, dims, payload):
    return bytes([0, 0, type_code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + payload


IDX_SEEDS = {
    "images.idx3": idx(0x08, [2, 3, 3], bytes(range(0, 180, 10))),
    "labels.idx1": idx(0x08, [4], bytes([0, 9, 3, 1])),
    "f32.idx2": idx(0x0D, [2, 2], struct.pack(">4f", 1, -1, 0.5, 1e30)),
    "f64.idx1": idx(0x0E, [1], struct.pack(">d", -2.5)),
    "i16.idx1": idx(0x0B, [3], struct.pack(">3h", -32768, 0, 32767)),
    "i32.idx2": idx(0x0C, [1, 2], struct.pack(">2i", -1, 2**31 - 1)),
    "i8_empty.idx2": idx(0x09, [0, 5], b""),   # no elements
    "scalar.idx0": idx(0x08, [], b"\x2a"),     # zero dimensions: one element
}


def write_idx():
    for name, data in IDX_SEEDS.items():
        write("idx_raw", name, data)
    write("idx_gzip", "images.idx3.gz", gz(IDX_SEEDS["images.idx3"]))
    write("idx_gzip", "f32.idx2.gz", gz(IDX_SEEDS["f32.idx2"]))
    # Two gzip members, as `cat a.gz b.gz` makes: the reader must join them.
    labels = IDX_SEEDS["labels.idx1"]
    write("idx_gzip", "two_members.idx1.gz", gz(labels[:6]) + gz(labels[6:]))
    # An optional FNAME field in the gzip header, as gzip(1) writes it.
    named = bytearray(gz(IDX_SEEDS["i16.idx1"]))
    named[3] |= 0x08
    write("idx_gzip", "named.idx1.gz", bytes(named[:10]) + b"i16.idx1\0" + bytes(named[10:]))


# ---- Fashion-MNIST: the train split's two IDX files (tiny 4x4 images).
def write_fashion_mnist():
    write("fashion_mnist", "train-images-idx3-ubyte", idx(0x08, [3, 4, 4], bytes(range(0, 240, 5))))
    write("fashion_mnist", "train-labels-idx1-ubyte", idx(0x08, [3], bytes([9, 0, 4])))


# ---- CIFAR-10: 3073-byte records (label, then 3x32x32 pixels).
def cifar_record(label, salt):
    return bytes([label]) + bytes((i * 7 + salt) % 256 for i in range(3072))


def write_cifar10():
    write("cifar10", "two_records.bin", cifar_record(3, 1) + cifar_record(9, 2))
    write("cifar10", "one_record.bin", cifar_record(0, 5))


# ---- FreeDict: a dictd database (.dict.dz or .dict, and .index with base64 offset/length).
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def b64(v):
    out = B64[v % 64]
    while v >= 64:
        v //= 64
        out = B64[v % 64] + out
    return out


DICT_ENTRIES = [
    ("00-database-info", "00-database-info\nThis is a tiny test database.\n"),
    ("cam-and-roller steering gear",
     "cam-and-roller steering gear /kˈam and ɹˈəʊlə/ <n>\n"
     "Schneckenrollenlenkung <fem>, Lenkung <fem> [auto]\n"),
    ("eel", "eel /ˈiːl/ <n>\n [zool.] Aal <masc>; Flussaal\n   see also: eels\n"),
    ("he/she", "he/she\n(er) sie (ugs.)\n"),
    ("nota bene", "nota bene /nˈəʊtə bˈɛnɪ/ (N.B. /ˈɛn bˈiː/, )\nwohlgemerkt, notabene\n"),
]


def dictzip(data, chunk=48):
    """gzip with dictzip's random-access field (RA): chunks compressed with full flushes."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    pieces = []
    for i in range(0, len(data), chunk):
        pieces.append(comp.compress(data[i:i + chunk]) + comp.flush(zlib.Z_FULL_FLUSH))
    pieces[-1] += comp.flush(zlib.Z_FINISH)
    ra = struct.pack("<HHH", 1, chunk, len(pieces)) + b"".join(struct.pack("<H", len(p)) for p in pieces)
    extra = b"RA" + struct.pack("<H", len(ra)) + ra
    header = bytes([0x1F, 0x8B, 8, 0x04 | 0x08, 0, 0, 0, 0, 2, 3]) + struct.pack("<H", len(extra)) + extra
    header += b"tiny.dict\0"
    return header + b"".join(pieces) + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)


def write_freedict():
    text, index = b"", ""
    for key, entry in DICT_ENTRIES:
        raw = entry.encode()
        index += f"{key}\t{b64(len(text))}\t{b64(len(raw))}\n"
        text += raw
    # A second index line for one entry (dictd lists alternative headwords like this).
    index += f"eels\t{b64(text.index(b'eel /'))}\t{b64(len(DICT_ENTRIES[2][1].encode()))}\n"
    write("freedict", "tiny.dict.dz", dictzip(text))
    write("freedict", "tiny.index", index)
    write("freedict", "plain.dict", text)
    write("freedict", "plain.index", index)


# ---- fortunes: fortunes separated by "%" lines; overstrike sequences; a gzip'd file.
def write_fortunes():
    write("fortunes", "wisdom",
          "A fortune in one line.\n%\nTwo lines,\n\tindented.\n\t\t-- Someone\n%\nUnicode: \u00e4\u00f6\u00fc \u4e2d\u6587\n%\n")
    write("fortunes", "overstrike",
          "_\bb_\bo_\bl_\bd and x\bxs\bst\btr\bru\bun\bnk\bk\r\n%\r\nCRLF line ends\r\n%\r\nno trailing separator")
    write("fortunes", "zipped", gz(b"Compressed fortune one.\n%\nCompressed fortune two.\n%\n"))


# ---- INI config files of `dtrain train --config`.
def write_ini():
    write("ini", "minimal.ini", "model = gpt\n")
    write("ini", "full.ini", """# every kind of value
model = vit
model-size = tiny
dim = 64
depth = 2
heads = 4
mlp-dim = 128
patch = 7
dropout = 0.1
augment = true
dataset = cifar10
data-dir = /data/cifar-10-batches-bin
seq-len = 32
batch-size = 64
grad-accum = 2
steps = 100
epochs = 0.5
optimizer = sgd
lr = 3e-4
min-lr = 0
schedule = linear
warmup-steps = 10
weight-decay = 0.05
clip-grad-norm = -1
label-smoothing = 0.1
precision = bf16
device = cpu
seed = 18446744073709551615
threads = 2
bucket-cap-mb = 0.5
zero = 1
collective-timeout = 30
checkpoint-dir = runs/ckpt
checkpoint-interval = 50
resume = runs/old
eval-interval = 20
eval-batches = 3
log-interval = 5
metrics-file = runs/m.jsonl
progress = false
""")
    write("ini", "comments.ini", "# comment\r\n\r\n; another comment\r\n  lr=0.01  \r\nsteps=5\r\nprecision = f16\r\n")


# ---- checkpoint state.json, in the shapes the trainer writes (launch/train_state.h).
def write_checkpoint_state():
    # Before per-rank RNG states: rank 0's alone, as "rng"; no settings.
    write("checkpoint_state", "single_rng.json", json.dumps({
        "step": 120,
        "data": {"epoch": 1, "batch": 20},
        "optimizer": {"step": 120, "groups": [{"lr": 0.001, "weight_decay": 0.05}]},
        "scheduler": {"last_step": 120},
        "rng": [1, 2, 18446744073709551615, 0, 9223372036854775808, 42],
        "loss_scale": 65536.0,
        "loss_scale_clean_steps": 17,
    }, indent=1) + "\n")
    write("checkpoint_state", "per_rank.json", json.dumps({
        "step": 0,
        "data": {"epoch": 0, "batch": 0},
        "optimizer": None,
        "scheduler": {"name": "cosine \u00e4\n", "deep": [[[{}]]], "x": -0.0, "tiny": 1e-300},
        "rng_per_rank": [[0, 0, 0, 0, 0, 0], [6, 5, 4, 3, 2, 1]],
        "loss_scale": 1e-30,
        "loss_scale_clean_steps": 9223372036854775807,
        "settings": {"batch-size": "64", "model": "vit", "empty": ""},
    }, separators=(",", ":")))
    # Only what must be there.
    write("checkpoint_state", "minimal.json",
          '{"step":0,"data":{"epoch":0,"batch":0},"optimizer":{},"scheduler":{},"rng":[0,0,0,0,0,0]}')


if __name__ == "__main__":
    write_safetensors()
    write_idx()
    write_fashion_mnist()
    write_cifar10()
    write_freedict()
    write_fortunes()
    write_ini()
    write_checkpoint_state()
