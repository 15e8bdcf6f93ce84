// SplitMix64 (Steele, Lea and Flood 2014): a tiny, fully specified 64-bit
// generator and hash. lft derives every seeded order and draw from it
// (synthetic corpus, the store's block permutations, per-pair flow times)
// because std distributions differ between platforms and library versions.
#ifndef LFT_COMMON_BASE_SPLIT_MIX64_H_
#define LFT_COMMON_BASE_SPLIT_MIX64_H_

#include <cstdint>

namespace lft {

inline constexpr uint64_t kSplitMix64Gamma = 0x9E3779B97F4A7C15ull;

// The output function of SplitMix64 (no state advance).
inline uint64_t SplitMix64Finalize(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Advances *state by the gamma and returns the next output.
inline uint64_t SplitMix64Next(uint64_t* state) {
  return SplitMix64Finalize(*state += kSplitMix64Gamma);
}

// One step from `x` without keeping state: a good 64-bit hash of x.
inline uint64_t SplitMix64Hash(uint64_t x) {
  return SplitMix64Finalize(x + kSplitMix64Gamma);
}

}  // namespace lft

#endif  // LFT_COMMON_BASE_SPLIT_MIX64_H_
