// Every environment variable lft reads, in one place, with what it does.
#ifndef LFT_COMMON_BASE_ENV_H_
#define LFT_COMMON_BASE_ENV_H_

namespace lft {

// Log verbosity: debug, info (default), warning or error.
inline constexpr char kEnvLogLevel[] = "LFT_LOG_LEVEL";
// Bearer token that clients send and servers require (unset: see --token).
inline constexpr char kEnvAuthToken[] = "LFT_AUTH_TOKEN";
// Latent store address for `lftctl pull` when --store is not given
// (HOST:PORT; unset: 127.0.0.1:7071, lft-store's default).
inline constexpr char kEnvStoreAddress[] = "LFT_STORE_ADDRESS";
// Root of the source tree; tests find committed fixtures through it.
inline constexpr char kEnvTestSourceDir[] = "LFT_TEST_SRCDIR";
// Tests only: a Pile-format corpus directory (train/*.jsonl.zst,
// val.jsonl.zst); the tests that read a real corpus skip without it.
inline constexpr char kEnvTestPileCorpus[] = "LFT_TEST_PILE_CORPUS";

}  // namespace lft

#endif  // LFT_COMMON_BASE_ENV_H_
