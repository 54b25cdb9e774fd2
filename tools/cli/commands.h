// commands.h — subcommands of the `infer` binary that live in their own files. Each add_*_command registers
// its options on `app` and stores the function that runs it in *run (called when the subcommand was given).
#pragma once
#include <CLI/CLI.hpp>
#include <functional>

CLI::App* add_bench_command(CLI::App& app, std::function<int()>* run);
CLI::App* add_render_command(CLI::App& app, std::function<int()>* run);
CLI::App* add_serve_command(CLI::App& app, std::function<int()>* run);
