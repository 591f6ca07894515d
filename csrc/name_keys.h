// The Philox keys of streams by name (docs/spec.md §4b): BLAKE2b (RFC 7693) with an 8-byte
// digest, keyed by the seed's 8 little-endian bytes, over a name's UTF-8 bytes; the digest read
// little-endian. A model of 10^5 parameters has 10^5 names: hashed here, a name of under 128
// bytes costs one compression, where Python's hashlib costs a few object calls per name.
// Python-facing: included by bindings.cpp only. tests/test_names.py checks it against
// hashlib.
#pragma once

#include <torch/extension.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace nspl {
namespace blake2b {

constexpr uint64_t kIv[8] = {0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL,
                             0xa54ff53a5f1d36f1ULL, 0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL,
                             0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL};

// The message schedule: which words of the block each of the 12 rounds mixes in (round r uses
// row r mod 10).
constexpr uint8_t kSigma[10][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4}, {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13}, {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11}, {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5}, {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
};

constexpr size_t kBlock = 128;

inline uint64_t rotr(uint64_t x, int n) { return (x >> n) | (x << (64 - n)); }

inline uint64_t load_le(const unsigned char* p) {
  uint64_t x = 0;
  for (int i = 7; i >= 0; --i) x = (x << 8) | p[i];
  return x;
}

// The compression function F on state h of block `block`, `bytes` being the count of input
// bytes hashed so far (this block's included), `last` for the final block.
inline void compress(uint64_t h[8], const unsigned char block[kBlock], uint64_t bytes, bool last) {
  uint64_t m[16], v[16];
  for (int i = 0; i < 16; ++i) m[i] = load_le(block + 8 * i);
  for (int i = 0; i < 8; ++i) {
    v[i] = h[i];
    v[i + 8] = kIv[i];
  }
  v[12] ^= bytes;  // the counter's high word stays 0: a name is far below 2^64 bytes
  if (last) v[14] = ~v[14];
  auto g = [&v](int a, int b, int c, int d, uint64_t x, uint64_t y) {
    v[a] += v[b] + x;
    v[d] = rotr(v[d] ^ v[a], 32);
    v[c] += v[d];
    v[b] = rotr(v[b] ^ v[c], 24);
    v[a] += v[b] + y;
    v[d] = rotr(v[d] ^ v[a], 16);
    v[c] += v[d];
    v[b] = rotr(v[b] ^ v[c], 63);
  };
  for (int round = 0; round < 12; ++round) {
    const uint8_t* s = kSigma[round % 10];
    g(0, 4, 8, 12, m[s[0]], m[s[1]]);
    g(1, 5, 9, 13, m[s[2]], m[s[3]]);
    g(2, 6, 10, 14, m[s[4]], m[s[5]]);
    g(3, 7, 11, 15, m[s[6]], m[s[7]]);
    g(0, 5, 10, 15, m[s[8]], m[s[9]]);
    g(1, 6, 11, 12, m[s[10]], m[s[11]]);
    g(2, 7, 8, 13, m[s[12]], m[s[13]]);
    g(3, 4, 9, 14, m[s[14]], m[s[15]]);
  }
  for (int i = 0; i < 8; ++i) h[i] ^= v[i] ^ v[i + 8];
}

// BLAKE2b-64 keyed by `seed`'s 8 little-endian bytes: the state after the key's block, which
// every name of one seed shares, is worked out once.
class Keyed {
 public:
  explicit Keyed(uint64_t seed) {
    for (int i = 0; i < 8; ++i) h_[i] = kIv[i];
    h_[0] ^= 0x01010000ULL ^ (8ULL << 8) ^ 8ULL;  // parameter block: digest 8 bytes, key 8 bytes
    std::memset(key_block_, 0, kBlock);          // the key, zero-padded to a block, comes first
    for (int i = 0; i < 8; ++i) key_block_[i] = static_cast<unsigned char>(seed >> (8 * i));
    std::memcpy(after_key_, h_, sizeof h_);
    compress(after_key_, key_block_, kBlock, false);
  }

  // The digest of `data` read little-endian.
  uint64_t operator()(const char* data, size_t size) const {
    uint64_t h[8];
    if (size == 0) {  // the key's block is the last
      std::memcpy(h, h_, sizeof h);
      compress(h, key_block_, kBlock, true);
      return h[0];
    }
    std::memcpy(h, after_key_, sizeof h);
    unsigned char block[kBlock];
    uint64_t bytes = kBlock;
    while (size > 0) {
      const size_t take = size < kBlock ? size : kBlock;
      std::memcpy(block, data, take);
      std::memset(block + take, 0, kBlock - take);
      bytes += take;
      data += take;
      size -= take;
      compress(h, block, bytes, size == 0);
    }
    return h[0];
  }

 private:
  uint64_t h_[8];          // the state before any block
  uint64_t after_key_[8];  // the state after the key's block, when a message follows it
  unsigned char key_block_[kBlock];
};

}  // namespace blake2b

// name_keys(seed, names) -> [key, ...]: the key of each name (a str) under `seed` (in
// [0, 2^64)). Names come checked and canonical (stream.check_names); a str that UTF-8 cannot
// encode raises Python's UnicodeEncodeError.
inline py::list name_keys(uint64_t seed, py::sequence names) {
  const blake2b::Keyed keyed(seed);
  const Py_ssize_t count = PySequence_Size(names.ptr());
  if (count < 0) throw py::error_already_set();
  py::list keys(count);
  for (Py_ssize_t k = 0; k < count; ++k) {
    py::object name = py::reinterpret_steal<py::object>(PySequence_GetItem(names.ptr(), k));
    if (!name) throw py::error_already_set();
    if (!PyUnicode_Check(name.ptr())) throw py::type_error("nspl_filler: names must be str");
    Py_ssize_t size = 0;
    const char* data = PyUnicode_AsUTF8AndSize(name.ptr(), &size);
    if (data == nullptr) throw py::error_already_set();
    PyObject* key = PyLong_FromUnsignedLongLong(keyed(data, static_cast<size_t>(size)));
    if (key == nullptr) throw py::error_already_set();
    PyList_SET_ITEM(keys.ptr(), k, key);
  }
  return keys;
}

}  // namespace nspl
