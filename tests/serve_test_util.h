// serve_test_util.h — helpers of the `infer serve` tests: start the server on a free loopback port, talk to it with
// curl (as a user would), read SSE streams.
#pragma once
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace infer::servetest {

using json = nlohmann::ordered_json;

inline std::string demo_model() { return std::string(INFER_MODELS_DIR) + "/qwen3-tiny-random"; }

// A port nobody listens on now (bound then released; the server binds it right after).
inline int free_port() {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  if (::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw std::runtime_error("bind failed");
  socklen_t len = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(s);
  return ntohs(a.sin_port);
}

// Runs a shell command, returns its stdout.
inline std::string sh(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) throw std::runtime_error("popen failed: " + cmd);
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

inline std::string tmp_path(const std::string& tag) {
  static std::atomic<int> counter{0};  // client threads call this concurrently: each must get its own files
  return (std::filesystem::temp_directory_path() /
          ("infer_serve_" + std::to_string(::getpid()) + "_" + tag + "_" + std::to_string(counter++)))
      .string();
}

struct Http {
  int status = 0;
  std::string body, headers;
  json j() const { return json::parse(body); }
};

// One request through curl. body: sent as is (POST when not empty). extra: more curl arguments.
inline Http curl(int port, const std::string& path, const std::string& body = "", const std::string& extra = "",
                 int max_time = 120) {
  const std::string bf = tmp_path("req"), of = tmp_path("out"), hf = tmp_path("hdr");
  std::string cmd = "curl -s -N --max-time " + std::to_string(max_time) + " -o " + of + " -D " + hf +
                    " -w '%{http_code}' " + extra + " ";
  if (!body.empty()) {
    std::ofstream(bf, std::ios::binary) << body;
    cmd += "-H 'Content-Type: application/json' --data-binary @" + bf + " ";
  }
  cmd += "http://127.0.0.1:" + std::to_string(port) + path;
  Http h;
  const std::string code = sh(cmd);
  h.status = std::atoi(code.c_str());
  std::ifstream o(of, std::ios::binary), hd(hf, std::ios::binary);
  h.body.assign(std::istreambuf_iterator<char>(o), {});
  h.headers.assign(std::istreambuf_iterator<char>(hd), {});
  std::filesystem::remove(bf);
  std::filesystem::remove(of);
  std::filesystem::remove(hf);
  return h;
}

// The `data:` payloads of an SSE body, in order ("[DONE]" included as is).
inline std::vector<std::string> sse_data(const std::string& body) {
  std::vector<std::string> out;
  std::istringstream in(body);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.rfind("data: ", 0) == 0) out.push_back(line.substr(6));
  }
  return out;
}

// `infer serve` as a child process. Waits until /health answers.
class ServerProcess {
 public:
  explicit ServerProcess(const std::vector<std::string>& extra_args, const std::string& model = demo_model()) {
    port_ = free_port();
    log_ = tmp_path("log");
    std::vector<std::string> args = {INFER_BIN, "serve", "-m", model, "--port", std::to_string(port_)};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // a test that dies must not leave its server holding ctest's pipes
      FILE* f = std::freopen(log_.c_str(), "w", stderr);
      (void)f;
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    for (int i = 0; i < 600; ++i) {
      if (curl(port_, "/health", "", "", 5).status == 200) return;
      int st = 0;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("infer serve exited at start: " + log());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    throw std::runtime_error("infer serve did not answer /health within 60 s: " + log());
  }
  ~ServerProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      wait_exit(20);
      if (pid_ > 0) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
      }
    }
    std::filesystem::remove(log_);
  }
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string log() const {
    std::ifstream f(log_);
    return std::string(std::istreambuf_iterator<char>(f), {});
  }
  // Waits up to `seconds` for the process to end; returns its exit status (-1 if it is still running).
  int wait_exit(int seconds) {
    for (int i = 0; i < seconds * 20; ++i) {
      int st = 0;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return -1;
  }
  json health() const { return curl(port_, "/health", "", "", 10).j(); }

 private:
  int port_ = 0;
  pid_t pid_ = -1;
  std::string log_;
};

}  // namespace infer::servetest
