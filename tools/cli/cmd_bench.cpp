// cmd_bench.cpp — `infer bench`: prompt-processing (pp) and text-generation (tg) throughput with llama-bench's
// meaning and field names, so scripts and plots written for llama-bench work unchanged.
//
//   pp<N>: one N-token prompt evaluated as a batch from an empty cache;  t/s = N / time
//   tg<N>: N tokens decoded one at a time from an empty cache;           t/s = N / time
// Each test runs once as a warm-up, then -r times; the result is mean ± stddev of the per-run t/s.
#include <sys/mman.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>
#include <string>
#include <vector>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "commands.h"
#include "infer/infer.hpp"

#ifndef INFER_GIT_COMMIT
#define INFER_GIT_COMMIT "unknown"
#endif

using json = nlohmann::json;

namespace {

struct BenchArgs {
  std::string model;
  std::string prompts = "512", gens = "128", threads;
  int reps = 5;
  std::string output = "md";
  std::string device = "cpu";
  int ctx_extra = 0;
  bool mem_bw = false;
};

// Streaming read bandwidth with nt threads: the memory side of the decode roofline. The machine's bandwidth can move
// from second to second (other tenants of the memory bus), so with --mem-bw a probe runs next to every repetition of
// every test (before each and after the last), and a test's bandwidth is that of its own probes: their total bytes
// over their total time (the harmonic mean, the way a decode rate averages over its tokens).
#if defined(__x86_64__)
__attribute__((target("avx2"))) uint64_t sum_slice_avx2(const uint64_t* p, size_t n) {
  __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
  for (size_t i = 0; i + 16 <= n; i += 16) {
    a = _mm256_xor_si256(a, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
    b = _mm256_xor_si256(b, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 4)));
    c = _mm256_xor_si256(c, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 8)));
    d = _mm256_xor_si256(d, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 12)));
  }
  a = _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_xor_si256(c, d));
  return uint64_t(_mm256_extract_epi64(a, 0) ^ _mm256_extract_epi64(a, 1) ^ _mm256_extract_epi64(a, 2) ^
                  _mm256_extract_epi64(a, 3));
}
#endif
uint64_t sum_slice(const uint64_t* p, size_t n) {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx2")) return sum_slice_avx2(p, n);
#endif
  uint64_t a = 0, b = 0, c = 0, d = 0;
  for (size_t i = 0; i + 4 <= n; i += 4) a ^= p[i], b ^= p[i + 1], c ^= p[i + 2], d ^= p[i + 3];
  return a ^ b ^ c ^ d;
}

// One probe: nt threads each sum their slice of a fresh 512 MiB buffer (16× the largest L3 we target), 6 passes.
// Adds the bytes read and the seconds taken to *bytes / *secs. The buffer is freed before returning, so it never
// shows in the tests' peak RSS (see PeakRss).
void probe_bandwidth(int nt, double* bytes, double* secs) {
  const size_t size = size_t(512) << 20, n = size / 8;
  // On transparent huge pages where the kernel allows it, as the CPU backend keeps its packed weights.
  auto* buf = static_cast<uint64_t*>(std::aligned_alloc(size_t(2) << 20, size));
  if (!buf) return;
  ::madvise(buf, size, MADV_HUGEPAGE);
  for (size_t i = 0; i < n; ++i) buf[i] = i;
  // The readers are started first and spin until every one is running, then all read at once: threads created on
  // the spot read markedly slower at first (the CPU they land on is still waking up), which the decode's spinning
  // thread pool never sees.
  std::vector<uint64_t> sink(static_cast<size_t>(nt));
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> th;
  for (int t = 0; t < nt; ++t)
    th.emplace_back([&, t] {
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) {
      }
      for (int pass = 0; pass < 6; ++pass) sink[size_t(t)] ^= sum_slice(buf + n / size_t(nt) * size_t(t), n / size_t(nt));
    });
  while (ready.load() < nt) {
  }
  const auto t0 = std::chrono::steady_clock::now();
  go.store(true, std::memory_order_release);
  for (auto& x : th) x.join();
  *secs += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  *bytes += 6.0 * double(size);
  std::free(buf);
  volatile uint64_t keep = sink[0];  // the sums are the loads' only use
  (void)keep;
}

// Peak RSS of the tests, without the bandwidth probes' buffers: the kernel's high-water mark (VmHWM) is read after
// each repetition and reset after each probe (/proc/self/clear_refs); without probes it is the process's peak.
struct PeakRss {
  double mib = 0;
  static double hwm_mib() {
    std::ifstream f("/proc/self/status");
    std::string line;
    while (std::getline(f, line))
      if (line.rfind("VmHWM:", 0) == 0) return std::atof(line.c_str() + 6) / 1024.0;  // kB
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return double(ru.ru_maxrss) / 1024.0;  // ru_maxrss is KiB on Linux
  }
  void sample() { mib = std::max(mib, hwm_mib()); }
  static void reset() { std::ofstream("/proc/self/clear_refs") << "5"; }
};

std::vector<int> parse_list(const std::string& s, const char* what) {
  std::vector<int> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    try {
      size_t pos = 0;
      const int x = std::stoi(item, &pos);
      if (pos != item.size() || x < 0) throw std::invalid_argument(item);
      v.push_back(x);
    } catch (const std::exception&) {
      throw infer::Exception(INFER_ERR_INVALID_ARG, std::string(what) + ": '" + item + "' is not a non-negative integer");
    }
  }
  return v;
}

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown";
}

std::string iso_time() {
  char buf[64];
  const std::time_t t = std::time(nullptr);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

struct Record {
  int n_threads, n_prompt, n_gen;
  std::vector<double> ns;  // per repetition
  double probe_bytes = 0, probe_secs = 0;  // --mem-bw: this test's bandwidth probes
  std::vector<double> probe_gbps;          // each probe's own rate
};

// Times one repetition of pp (n_prompt > 0) or tg (n_gen > 0) on a fresh cache.
double run_once(infer::Context& ctx, int n_prompt, int n_gen, int vocab, std::mt19937& rng) {
  std::uniform_int_distribution<int32_t> tok(0, vocab - 1);
  ctx.truncate(0);
  using clock = std::chrono::steady_clock;
  if (n_prompt > 0) {
    std::vector<int32_t> ids(n_prompt);
    for (auto& id : ids) id = tok(rng);
    const auto t0 = clock::now();
    ctx.eval(ids);
    return std::chrono::duration<double, std::nano>(clock::now() - t0).count();
  }
  const auto t0 = clock::now();
  for (int i = 0; i < n_gen; ++i) ctx.eval({tok(rng)});
  return std::chrono::duration<double, std::nano>(clock::now() - t0).count();
}

int run_bench(const BenchArgs& a) {
  if (a.output != "md" && a.output != "json" && a.output != "csv")
    throw infer::Exception(INFER_ERR_INVALID_ARG, "-o must be md, json or csv");
  const auto pps = parse_list(a.prompts, "-p"), tgs = parse_list(a.gens, "-n");
  auto ths = parse_list(a.threads, "-t");
  if (ths.empty()) ths.push_back(0);
  if (a.reps < 1) throw infer::Exception(INFER_ERR_INVALID_ARG, "-r must be at least 1");

  infer_model_params mp = infer_model_default_params();
  mp.load_tokenizer = false;
  infer::Model model(a.model, mp);
  const int vocab = model.vocab_size();
  int max_tokens = 1;
  for (int p : pps) max_tokens = std::max(max_tokens, p);
  for (int g : tgs) max_tokens = std::max(max_tokens, g);

  // Prompts go through in steps of up to 512 tokens; a tg-only run needs scratch for one token only.
  int n_batch = 1;
  for (int p : pps) n_batch = std::max(n_batch, std::min(p, 512));
  std::vector<Record> recs;
  PeakRss peak;
  std::string backend_name = "cpu";
  std::mt19937 rng(1234);
  for (int t : ths) {
    infer_context_params cp = infer_context_default_params();
    cp.n_ctx = max_tokens;
    cp.n_batch = n_batch;
    cp.n_threads = t;
    cp.device = a.device.c_str();
    infer::Context ctx(model, cp);
    backend_name = infer_context_device(ctx.get());
    const int nt = t > 0 ? t : int(std::thread::hardware_concurrency());
    auto probe = [&](Record& r) {
      double b = 0, sec = 0;
      probe_bandwidth(nt, &b, &sec);
      r.probe_bytes += b;
      r.probe_secs += sec;
      if (sec > 0) r.probe_gbps.push_back(b / sec / 1e9);
      PeakRss::reset();
    };
    auto run_test = [&](int p, int g) {
      Record r{nt, p, g, {}, 0, 0, {}};
      run_once(ctx, p, g, vocab, rng);  // warm-up
      peak.sample();
      for (int i = 0; i < a.reps; ++i) {
        if (a.mem_bw) probe(r);
        r.ns.push_back(run_once(ctx, p, g, vocab, rng));
        peak.sample();
      }
      if (a.mem_bw) probe(r);
      recs.push_back(r);
      if (a.output == "md")
        std::fprintf(stderr, "  %s%d, %d threads: done\n", p ? "pp" : "tg", p ? p : g, nt);
    };
    for (int p : pps)
      if (p > 0) run_test(p, 0);
    for (int g : tgs)
      if (g > 0) run_test(0, g);
  }

  const std::string dtype = "bf16";
  peak.sample();
  const double rss = peak.mib;
  const int64_t bytes_per_token = model.weight_bytes_per_token();
  json arr = json::array();
  for (const auto& r : recs) {
    const int n = r.n_prompt + r.n_gen;
    std::vector<double> ts;
    double avg_ns = 0;
    for (double ns : r.ns) {
      ts.push_back(n * 1e9 / ns);
      avg_ns += ns / double(r.ns.size());
    }
    double avg_ts = 0, sd_ts = 0, sd_ns = 0;
    for (double v : ts) avg_ts += v / double(ts.size());
    for (size_t i = 0; i < ts.size(); ++i) {
      sd_ts += (ts[i] - avg_ts) * (ts[i] - avg_ts);
      sd_ns += (r.ns[i] - avg_ns) * (r.ns[i] - avg_ns);
    }
    const double denom = ts.size() > 1 ? double(ts.size() - 1) : 1.0;  // sample stddev, as llama-bench
    json j;
    j["build_commit"] = INFER_GIT_COMMIT;
    j["build_version"] = infer_version();
    j["cpu_info"] = cpu_model();
    j["gpu_info"] = "";
    j["backends"] = a.device == "cpu" ? "CPU" : a.device;
    j["backend"] = backend_name;
    j["system_info"] = infer_system_info();
    j["model_filename"] = a.model;
    j["model_type"] = model.desc();
    j["model_size"] = model.weight_bytes();
    j["model_n_params"] = model.n_params();
    j["dtype"] = dtype;
    j["n_batch"] = n_batch;
    j["n_ubatch"] = 512;
    j["n_threads"] = r.n_threads;
    j["type_k"] = "f32";
    j["type_v"] = "f32";
    j["n_gpu_layers"] = 0;
    j["use_mmap"] = true;
    j["n_prompt"] = r.n_prompt;
    j["n_gen"] = r.n_gen;
    j["n_depth"] = 0;
    j["test_time"] = iso_time();
    j["avg_ns"] = int64_t(avg_ns);
    j["stddev_ns"] = int64_t(std::sqrt(sd_ns / denom));
    j["avg_ts"] = avg_ts;
    j["stddev_ts"] = std::sqrt(sd_ts / denom);
    j["samples_ns"] = r.ns;
    j["samples_ts"] = ts;
    j["peak_rss_mib"] = rss;
    j["weight_bytes_per_token"] = bytes_per_token;
    if (a.mem_bw) {
      const double gbps = r.probe_secs > 0 ? r.probe_bytes / r.probe_secs / 1e9 : 0.0;
      j["mem_read_gbps"] = gbps;
      j["mem_read_gbps_samples"] = r.probe_gbps;
      // Decode roofline: every weight byte a token needs, read once at the measured bandwidth.
      if (r.n_gen > 0) j["roofline_ts"] = gbps * 1e9 / double(bytes_per_token);
    }
    arr.push_back(j);
  }

  if (a.output == "json") {
    std::cout << arr.dump(2) << "\n";
  } else if (a.output == "csv") {
    const char* cols[] = {"build_commit", "cpu_info", "backends", "model_filename", "model_type", "model_size",
                          "model_n_params", "dtype", "n_threads", "n_prompt", "n_gen", "test_time", "avg_ns",
                          "stddev_ns", "avg_ts", "stddev_ts", "peak_rss_mib"};
    for (size_t i = 0; i < std::size(cols); ++i) std::cout << (i ? "," : "") << cols[i];
    std::cout << "\n";
    for (const auto& j : arr) {
      for (size_t i = 0; i < std::size(cols); ++i) {
        const json& v = j[cols[i]];
        std::cout << (i ? "," : "") << (v.is_string() ? "\"" + v.get<std::string>() + "\"" : v.dump());
      }
      std::cout << "\n";
    }
  } else {
    std::printf("| model | size | params | backend | threads | test | t/s |%s\n", a.mem_bw ? " roofline |" : "");
    std::printf("| --- | ---: | ---: | --- | ---: | ---: | ---: |%s\n", a.mem_bw ? " ---: |" : "");
    for (const auto& j : arr) {
      const int p = j["n_prompt"], g = j["n_gen"];
      std::printf("| %s | %.2f GiB | %.2f B | CPU (%s) | %d | %s%d | %.2f ± %.2f |", model.arch().c_str(),
                  double(j["model_size"].get<int64_t>()) / (1 << 30), double(j["model_n_params"].get<int64_t>()) / 1e9,
                  infer_system_info(), j["n_threads"].get<int>(), p ? "pp" : "tg", p ? p : g,
                  j["avg_ts"].get<double>(), j["stddev_ts"].get<double>());
      if (a.mem_bw) {
        if (j.contains("roofline_ts"))
          std::printf(" %.2f (%.0f%%) |", j["roofline_ts"].get<double>(),
                      100.0 * j["avg_ts"].get<double>() / j["roofline_ts"].get<double>());
        else
          std::printf(" |");
      }
      std::printf("\n");
    }
    if (a.mem_bw) {
      std::printf("\n%.3f GB of weights read per token; read bandwidth (%d-thread probes next to each repetition):\n",
                  double(bytes_per_token) / 1e9, arr.empty() ? 0 : arr[0]["n_threads"].get<int>());
      for (const auto& j : arr) {
        const auto& smp = j["mem_read_gbps_samples"];
        double lo = 1e300, hi = 0;
        for (const auto& v : smp) lo = std::min(lo, v.get<double>()), hi = std::max(hi, v.get<double>());
        const int p = j["n_prompt"], g = j["n_gen"];
        std::printf("  %s%d, %d threads: %.1f GB/s (%zu probes, %.1f-%.1f)\n", p ? "pp" : "tg", p ? p : g,
                    j["n_threads"].get<int>(), j["mem_read_gbps"].get<double>(), smp.size(), smp.empty() ? 0.0 : lo,
                    hi);
      }
    }
    std::printf("\nbuild: %s, peak RSS %.0f MiB\n", INFER_GIT_COMMIT, rss);
  }
  return 0;
}

}  // namespace

CLI::App* add_bench_command(CLI::App& app, std::function<int()>* run) {
  auto a = std::make_shared<BenchArgs>();
  auto* b = app.add_subcommand("bench", "Measure prompt processing (pp) and generation (tg) speed, like llama-bench");
  b->add_option("-m,--model", a->model, "Model directory")->required();
  b->add_option("-p,--n-prompt", a->prompts, "Prompt lengths for pp tests, comma-separated (0 = none)")->capture_default_str();
  b->add_option("-n,--n-gen", a->gens, "Token counts for tg tests, comma-separated (0 = none)")->capture_default_str();
  b->add_option("-r,--repetitions", a->reps, "Repetitions of each test")->capture_default_str();
  b->add_option("-t,--threads", a->threads, "Thread counts, comma-separated (default: all cores)");
  b->add_option("-o,--output", a->output, "Output format: md, json or csv")->capture_default_str();
  b->add_option("--device", a->device, "cpu or cuda")->capture_default_str();
  b->add_flag("--mem-bw", a->mem_bw,
              "Also measure memory read bandwidth (a 512 MiB streaming read with the test's thread count, next to "
              "every repetition) and report the decode roofline: bandwidth / weight bytes read per token");
  *run = [a] { return run_bench(*a); };
  return b;
}
