// cli_test_util.h — running a command (usually the `infer` binary) through the shell from a test, as a user would.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace infer::testutil {

struct CmdResult {
  int code = -1;          // exit status, or 128 + signal; -1 if the command could not be started
  bool signaled = false;  // ended by a signal
  std::string out;        // what the command wrote to stdout
};

// Runs COMMAND through the shell (so it may redirect), capturing its stdout.
inline CmdResult run_shell(const std::string& command) {
  CmdResult r;
  FILE* p = popen(command.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int st = pclose(p);
  r.signaled = WIFSIGNALED(st);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

// `infer ARGS` (ARGS may redirect stdin), with stderr merged into out.
inline CmdResult run_infer(const std::string& args) { return run_shell(std::string(INFER_BIN) + " " + args + " 2>&1"); }

// `infer ARGS`, stdout only (stderr dropped): for JSON and other machine-read output.
inline CmdResult run_infer_stdout(const std::string& args) {
  return run_shell(std::string(INFER_BIN) + " " + args + " 2>/dev/null");
}

}  // namespace infer::testutil
