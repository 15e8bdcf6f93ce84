// RocksDB's crc32c, replaced by lft's hardware one.
//
// Debian's librocksdb is built portable, so rocksdb::crc32c::Extend runs a
// table-driven software loop (about 0.5 GB/s on x86-64); every byte of
// every pair passes through it when a memtable is flushed into a blob file,
// which caps one store process near 1 GB/s of pairs (docs/store.md). The
// library calls Extend only through its PLT, so a definition of the same
// symbol exported by the executable binds those calls here
// (rocksdb_crc32c.cc; CMake exports the symbol from every program that
// links lft_latent_store). The function computes the same CRC-32C, so files
// written before and after stay readable either way.
#ifndef LFT_LATENT_STORE_ROCKSDB_CRC32C_H_
#define LFT_LATENT_STORE_ROCKSDB_CRC32C_H_

namespace lft {

// True when librocksdb's calls to rocksdb::crc32c::Extend reach lft's
// function (the symbol was exported and won the dynamic binding) and that
// function uses the SSE4.2 instruction. LatentStore::Open logs it.
bool RocksDbCrc32cIsAccelerated();

}  // namespace lft

#endif  // LFT_LATENT_STORE_ROCKSDB_CRC32C_H_
