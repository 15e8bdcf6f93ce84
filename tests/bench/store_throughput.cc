// Latent store throughput: put and scan, embedded (LatentStore in-process)
// and over gRPC on loopback, with payload files (the default) and with the
// payloads inside RocksDB (BlobDB blob files, plain SSTs),
// each beside a plain sequential file write (fsync per batch, the store's
// durability point) and read of the same bytes on the same disk.
//
//   store_throughput [--dir DIR] [--total_mib 256] [--tokens 2048]
//                    [--hidden 1024] [--batch_pairs 4] [--no_sync] [--warm]
//                    [--repeat 3]
//
// Each row is the median of --repeat runs (the disk is shared and noisy);
// the individual runs are printed beside it.
//
// Before every read the files are fsync'ed and evicted from the page cache
// (posix_fadvise DONTNEED), so reads come from the disk for the store and
// the baseline alike. Payloads are random bytes: the store never decodes.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "common/rpc/channel.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "latent-store/latent_store.h"
#include "latent-store/remote_pair_store.h"
#include "latent-store/store_service.h"

namespace fs = std::filesystem;

namespace {

struct Args {
  std::string dir;
  uint64_t total_mib = 256;
  uint32_t tokens = 2048;
  uint32_t hidden = 1024;
  uint32_t batch_pairs = 4;
  bool sync = true;
  bool warm = false;  // skip page-cache eviction before reads
  int repeat = 3;     // rows report the median of this many runs
};
bool g_warm = false;

double Now() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void Evict(const fs::path& dir) {
  if (g_warm) return;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    int fd = open(e.path().c_str(), O_RDONLY);
    if (fd < 0) continue;
    fdatasync(fd);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
  }
}

uint64_t DirBytes(const fs::path& dir) {
  uint64_t n = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) n += e.file_size();
  }
  return n;
}

struct Result {
  double seconds = 0;
  uint64_t bytes = 0;
  uint64_t pairs = 0;
};

void Die(const absl::Status& s, const char* what) {
  if (s.ok()) return;
  std::fprintf(stderr, "%s: %s\n", what, s.ToString().c_str());
  std::exit(1);
}

std::vector<lft::LatentPairRecord> Batch(const Args& a, const std::string& x,
                                         uint64_t first) {
  std::vector<lft::LatentPairRecord> batch(a.batch_pairs);
  for (uint32_t i = 0; i < a.batch_pairs; ++i) {
    auto& p = batch[i];
    p.shard = 0;
    p.sequence = first + i;
    p.tokens = a.tokens;
    p.hidden = a.hidden;
    p.codec = lft::TensorCodec::kBF16;
    p.x0 = x;
    p.x1 = x;
  }
  return batch;
}

Result FileWrite(const Args& a, const fs::path& path, const std::string& x,
                 uint64_t pairs) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  Result r;
  const double t0 = Now();
  for (uint64_t p = 0; p < pairs; ++p) {
    for (int k = 0; k < 2; ++k) {
      if (write(fd, x.data(), x.size()) != static_cast<ssize_t>(x.size())) {
        std::perror("write");
        std::exit(1);
      }
    }
    if ((p + 1) % a.batch_pairs == 0 || p + 1 == pairs) {
      if (a.sync) fsync(fd);
    }
    r.bytes += 2 * x.size();
    ++r.pairs;
  }
  close(fd);
  r.seconds = Now() - t0;
  return r;
}

Result FileRead(const fs::path& path, size_t pair_bytes) {
  Evict(path.parent_path());
  int fd = open(path.c_str(), O_RDONLY);
  std::string buf(pair_bytes, '\0');
  Result r;
  const double t0 = Now();
  ssize_t n;
  while ((n = read(fd, buf.data(), buf.size())) > 0) r.bytes += n;
  r.pairs = r.bytes / pair_bytes;
  r.seconds = Now() - t0;
  close(fd);
  return r;
}

Result Put(const Args& a, lft::PairStore* store, const std::string& x,
           uint64_t pairs, lft::LatentStore* flush) {
  lft::JobConfig c;
  c.hidden = a.hidden;
  c.codec = lft::TensorCodec::kBF16;
  Die(store->CreateJob("bench", c), "CreateJob");
  Result r;
  const double t0 = Now();
  for (uint64_t p = 0; p < pairs; p += a.batch_pairs) {
    auto batch = Batch(a, x, p);
    Die(store->PutPairs("bench", batch, absl::InfiniteFuture()), "PutPairs");
    r.pairs += batch.size();
    r.bytes += batch.size() * 2 * x.size();
  }
  // Count the flush to SST/blob files: it is the sustained cost.
  const double t_flush = Now();
  if (flush != nullptr) Die(flush->Flush(), "Flush");
  if (std::getenv("LFT_BENCH_VERBOSE") != nullptr) {
    std::fprintf(stderr, "put %.2fs flush %.2fs\n", t_flush - t0,
                 Now() - t_flush);
  }
  r.seconds = Now() - t0;
  return r;
}

Result Scan(lft::PairStore* store, const fs::path& dir) {
  Evict(dir);
  Result r;
  const double t0 = Now();
  lft::ScanOptions o;
  o.readahead_pairs = 8;
  auto reader = store->Scan("bench", o);
  Die(reader.status(), "Scan");
  lft::LatentPairRecord p;
  while (true) {
    auto more = (*reader)->Next(&p);
    Die(more.status(), "Next");
    if (!*more) break;
    r.bytes += p.x0.size() + p.x1.size();
    ++r.pairs;
  }
  r.seconds = Now() - t0;
  return r;
}

// Every measurement, by row, in first-seen order; printed as medians.
std::vector<std::pair<std::string, std::vector<Result>>> g_rows;

void Row(const char* path, const char* op, const Result& r) {
  const std::string key = std::string(path) + "|" + op;
  for (auto& [k, v] : g_rows) {
    if (k == key) {
      v.push_back(r);
      return;
    }
  }
  g_rows.push_back({key, {r}});
}

double MedianGbs(std::vector<Result> v) {
  std::vector<double> g;
  for (const Result& r : v) g.push_back(r.bytes / r.seconds / 1e9);
  std::sort(g.begin(), g.end());
  return g[g.size() / 2];
}

void PrintTable(uint64_t pair_bytes) {
  std::printf(
      "| path                         | op    | GB/s    | pairs/s  | x file | "
      "runs (GB/s)          |\n");
  std::printf(
      "|------------------------------|-------|---------|----------|--------|"
      "----------------------|\n");
  const double file_write = MedianGbs(g_rows[0].second);
  const double file_read = MedianGbs(g_rows[1].second);
  for (const auto& [key, runs] : g_rows) {
    const std::string path = key.substr(0, key.find('|'));
    const std::string op = key.substr(key.find('|') + 1);
    const double gbs = MedianGbs(runs);
    const bool write = op == "write" || op == "put";
    std::string all;
    for (const Result& r : runs) {
      char buf[32];
      std::snprintf(buf, sizeof(buf), "%s%.3f", all.empty() ? "" : " ",
                    r.bytes / r.seconds / 1e9);
      all += buf;
    }
    std::printf("| %-28s | %-5s | %7.3f | %8.1f | %6.2f | %-20s |\n",
                path.c_str(), op.c_str(), gbs, gbs * 1e9 / pair_bytes,
                gbs / (write ? file_write : file_read), all.c_str());
  }
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  const char* tmp = std::getenv("TMPDIR");
  a.dir = tmp ? tmp : "/tmp";
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (s == "--dir")
      a.dir = next();
    else if (s == "--total_mib")
      a.total_mib = std::stoull(next());
    else if (s == "--tokens")
      a.tokens = static_cast<uint32_t>(std::stoul(next()));
    else if (s == "--hidden")
      a.hidden = static_cast<uint32_t>(std::stoul(next()));
    else if (s == "--batch_pairs")
      a.batch_pairs = static_cast<uint32_t>(std::stoul(next()));
    else if (s == "--no_sync")
      a.sync = false;
    else if (s == "--warm")
      a.warm = g_warm = true;
    else if (s == "--repeat")
      a.repeat = std::max(1, std::stoi(next()));
    else {
      std::fprintf(
          stderr,
          "usage: %s [--dir DIR] [--total_mib N] [--tokens T] "
          "[--hidden H] [--batch_pairs B] [--no_sync] [--warm] [--repeat N]\n",
          argv[0]);
      return 2;
    }
  }
  const fs::path root =
      fs::path(a.dir) / ("lft_store_bench_" + std::to_string(getpid()));
  fs::create_directories(root);
  const size_t tensor_bytes = static_cast<size_t>(a.tokens) * a.hidden * 2;
  const size_t pair_bytes = 2 * tensor_bytes;
  const uint64_t pairs =
      std::max<uint64_t>(a.batch_pairs, (a.total_mib << 20) / pair_bytes);
  std::string x(tensor_bytes, '\0');
  std::mt19937_64 rng(1);
  for (size_t i = 0; i + 8 <= x.size(); i += 8) {
    const uint64_t v = rng();
    std::memcpy(&x[i], &v, 8);
  }
  std::printf(
      "pairs: %llu of [%u, %u] bf16 x2 = %.1f MiB each, %u per batch, "
      "%.0f MiB total, sync %s, dir %s\n\n",
      static_cast<unsigned long long>(pairs), a.tokens, a.hidden,
      pair_bytes / 1048576.0, a.batch_pairs, pairs * pair_bytes / 1048576.0,
      a.sync ? "on" : "off", root.c_str());
  // The store's layouts: payload files (the default), and payloads inside
  // RocksDB, in blob files or in plain SSTs.
  struct Layout {
    const char* name;
    const char* dir;
    bool payload_files, blob;
  };
  const Layout layouts[] = {
      {"embedded, payload files", "embedded_files", true, true},
      {"embedded, RocksDB BlobDB", "embedded_blob", false, true},
      {"embedded, RocksDB SST", "embedded_sst", false, false}};
  double disk_mib[3] = {0, 0, 0};
  for (int rep = 0; rep < a.repeat; ++rep) {
    const Result fw = FileWrite(a, root / "plain.bin", x, pairs);
    const Result fr = FileRead(root / "plain.bin", pair_bytes);
    Row("plain file (fsync/batch)", "write", fw);
    Row("plain file", "read", fr);
    fs::remove(root / "plain.bin");

    for (int l = 0; l < 3; ++l) {
      const Layout& layout = layouts[l];
      lft::LatentStoreOptions o;
      o.payload_files = layout.payload_files;
      o.enable_blob_files = layout.blob;
      o.sync = a.sync;
      const fs::path dir = root / layout.dir;
      {
        auto store = lft::LatentStore::Open(dir.string(), o);
        Die(store.status(), "Open");
        const Result w = Put(a, store->get(), x, pairs, store->get());
        Row(layout.name, "put", w);
        const Result r = Scan(store->get(), dir);
        Row(layout.name, "scan", r);
      }
      disk_mib[l] = DirBytes(dir) / 1048576.0;
      fs::remove_all(dir);
    }

    {
      lft::LatentStoreOptions o;
      o.sync = a.sync;
      const fs::path dir = root / "grpc_blob";
      auto store = lft::LatentStore::Open(dir.string(), o);
      Die(store.status(), "Open");
      lft::StoreServiceOptions so;
      lft::StoreService service(store->get(), so);
      grpc::ServerBuilder builder;
      int port = 0;
      builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                               &port);
      builder.SetMaxReceiveMessageSize(64 << 20);
      builder.SetMaxSendMessageSize(64 << 20);
      lft::ApplyBulkTransferSettings(&builder);  // as lft-store does
      builder.RegisterService(&service);
      auto server = builder.BuildAndStart();
      {
        auto remote =
            lft::RemotePairStore::Connect("127.0.0.1:" + std::to_string(port),
                                          lft::RemotePairStoreOptions())
                .value();
        const Result w = Put(a, remote.get(), x, pairs, store->get());
        Row("gRPC loopback, payload files", "put", w);
        const Result r = Scan(remote.get(), dir);
        Row("gRPC loopback, payload files", "scan", r);
      }
      server->Shutdown();
      store->reset();
      fs::remove_all(dir);
    }
  }  // repeat
  PrintTable(pair_bytes);
  std::printf(
      "\non disk after flush: payload files %.0f MiB, BlobDB %.0f MiB, plain "
      "SST %.0f MiB\n",
      disk_mib[0], disk_mib[1], disk_mib[2]);
  fs::remove_all(root);
  return 0;
}
