// symbols.cpp — names for diagnostics: kernels, code addresses and __shared__ variables.
//
// Reads the ELF symbol table (.symtab, else .dynsym) of the module that contains the emulator (the test
// executable, usually): function symbols name kernels and code addresses, STT_TLS symbols name the
// `static thread_local` variables that __shared__ becomes. Also finds the calling thread's TLS block of
// that module, the address range tracking.cpp treats as static shared memory.
#include <cxxabi.h>
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "internal.h"

namespace infer::simt::detail {

namespace {

struct Symbol {
  uintptr_t addr;  // functions: run-time address; TLS: offset in the TLS block
  size_t size;
  std::string name;  // mangled
};

struct Module {
  std::string path;
  uintptr_t base = 0;  // dlpi_addr
  size_t tls_memsz = 0;
  bool has_tls = false;
  std::vector<Symbol> funcs, tls;
};

void module_marker() {}

int find_module_cb(dl_phdr_info* info, size_t, void* data) {
  auto* m = static_cast<Module*>(data);
  const uintptr_t target = reinterpret_cast<uintptr_t>(&module_marker);
  bool mine = false;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const auto& ph = info->dlpi_phdr[i];
    if (ph.p_type == PT_LOAD && target >= info->dlpi_addr + ph.p_vaddr &&
        target < info->dlpi_addr + ph.p_vaddr + ph.p_memsz)
      mine = true;
  }
  if (!mine) return 0;
  m->path = info->dlpi_name && *info->dlpi_name ? info->dlpi_name : "/proc/self/exe";
  m->base = info->dlpi_addr;
  for (int i = 0; i < info->dlpi_phnum; ++i)
    if (info->dlpi_phdr[i].p_type == PT_TLS) {
      m->has_tls = true;
      m->tls_memsz = info->dlpi_phdr[i].p_memsz;
    }
  return 1;
}

void read_symbols(Module& m) {
  int fd = open(m.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  struct stat st {};
  if (fstat(fd, &st) != 0 || size_t(st.st_size) < sizeof(Elf64_Ehdr)) {
    close(fd);
    return;
  }
  const size_t size = size_t(st.st_size);
  void* map = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (map == MAP_FAILED) return;
  const auto* base = static_cast<const unsigned char*>(map);
  const auto* eh = reinterpret_cast<const Elf64_Ehdr*>(base);
  if (std::memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
      eh->e_shoff + size_t(eh->e_shnum) * sizeof(Elf64_Shdr) > size) {
    munmap(map, size);
    return;
  }
  const auto* sh = reinterpret_cast<const Elf64_Shdr*>(base + eh->e_shoff);
  const Elf64_Shdr* symtab = nullptr;
  for (int i = 0; i < eh->e_shnum; ++i)
    if (sh[i].sh_type == SHT_SYMTAB) symtab = &sh[i];
  if (!symtab)
    for (int i = 0; i < eh->e_shnum; ++i)
      if (sh[i].sh_type == SHT_DYNSYM) symtab = &sh[i];
  if (symtab && symtab->sh_link < eh->e_shnum && symtab->sh_offset + symtab->sh_size <= size) {
    const Elf64_Shdr& strtab = sh[symtab->sh_link];
    const auto* syms = reinterpret_cast<const Elf64_Sym*>(base + symtab->sh_offset);
    const size_t nsyms = symtab->sh_size / sizeof(Elf64_Sym);
    const char* strs = reinterpret_cast<const char*>(base + strtab.sh_offset);
    for (size_t i = 0; i < nsyms; ++i) {
      const Elf64_Sym& s = syms[i];
      if (s.st_name >= strtab.sh_size || s.st_shndx == SHN_UNDEF) continue;
      const int type = ELF64_ST_TYPE(s.st_info);
      if (type == STT_FUNC && s.st_value)
        m.funcs.push_back(Symbol{m.base + s.st_value, s.st_size, strs + s.st_name});
      else if (type == STT_TLS)
        m.tls.push_back(Symbol{s.st_value, s.st_size, strs + s.st_name});
    }
  }
  munmap(map, size);
  auto by_addr = [](const Symbol& a, const Symbol& b) { return a.addr < b.addr; };
  std::sort(m.funcs.begin(), m.funcs.end(), by_addr);
  std::sort(m.tls.begin(), m.tls.end(), by_addr);
}

Module& module() {
  static Module m;
  static std::once_flag once;
  std::call_once(once, [] {
    dl_iterate_phdr(find_module_cb, &m);
    if (!m.path.empty()) read_symbols(m);
  });
  return m;
}

std::string demangle(const std::string& mangled) {
  int status = 0;
  char* d = abi::__cxa_demangle(mangled.c_str(), nullptr, nullptr, &status);
  if (status != 0 || !d) return mangled;
  std::string s = d;
  std::free(d);
  return s;
}

const Symbol* lookup(const std::vector<Symbol>& v, uintptr_t a) {
  auto it = std::upper_bound(v.begin(), v.end(), a, [](uintptr_t x, const Symbol& s) { return x < s.addr; });
  if (it == v.begin()) return nullptr;
  --it;
  if (a >= it->addr + std::max<size_t>(it->size, 1)) return nullptr;
  return &*it;
}

// "void infer::foo_kernel<true>(int, float*)" -> "infer::foo_kernel<true>"
std::string strip_signature(std::string s) {
  int depth = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '<') ++depth;
    if (s[i] == '>') --depth;
    if (s[i] == '(' && depth == 0 && i > 0) {
      s.resize(i);
      break;
    }
  }
  if (s.rfind("void ", 0) == 0) s.erase(0, 5);
  return s;
}

struct TlsQuery {
  uintptr_t base;
  uintptr_t lo = 0;
  bool found = false;
};

int tls_cb(dl_phdr_info* info, size_t, void* data) {
  auto* q = static_cast<TlsQuery*>(data);
  if (info->dlpi_addr != q->base) return 0;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const auto& ph = info->dlpi_phdr[i];
    if (ph.p_type == PT_LOAD && reinterpret_cast<uintptr_t>(&module_marker) >= info->dlpi_addr + ph.p_vaddr &&
        reinterpret_cast<uintptr_t>(&module_marker) < info->dlpi_addr + ph.p_vaddr + ph.p_memsz) {
      q->lo = reinterpret_cast<uintptr_t>(info->dlpi_tls_data);
      q->found = info->dlpi_tls_data != nullptr;
      return 1;
    }
  }
  return 0;
}

}  // namespace

std::string symbolize(const void* pc) {
  if (!pc) return "?";
  const Module& m = module();
  const uintptr_t a = reinterpret_cast<uintptr_t>(pc);
  if (const Symbol* s = lookup(m.funcs, a)) {
    char off[32];
    std::snprintf(off, sizeof off, "+0x%zx", size_t(a - s->addr));
    return strip_signature(demangle(s->name)) + off;
  }
  Dl_info info{};
  if (dladdr(pc, &info) && info.dli_sname)
    return strip_signature(demangle(info.dli_sname));
  char buf[32];
  std::snprintf(buf, sizeof buf, "%p", pc);
  return buf;
}

std::string kernel_name(const void* fn) {
  const Module& m = module();
  const uintptr_t a = reinterpret_cast<uintptr_t>(fn);
  if (const Symbol* s = lookup(m.funcs, a); s && s->addr == a) return strip_signature(demangle(s->name));
  Dl_info info{};
  if (dladdr(fn, &info) && info.dli_sname) return strip_signature(demangle(info.dli_sname));
  char buf[40];
  std::snprintf(buf, sizeof buf, "kernel@%p", fn);
  return buf;
}

std::string tls_variable(size_t offset) {
  const Module& m = module();
  const Symbol* s = lookup(m.tls, offset);
  if (!s) return std::string("+").append(std::to_string(offset));
  std::string name = demangle(s->name);
  // "infer::foo_kernel<true>(int*)::tile" -> "tile"
  if (size_t p = name.rfind(")::"); p != std::string::npos) name = name.substr(p + 3);
  std::string out = "'";
  out += name;
  out += "'+";
  out += std::to_string(offset - s->addr);
  return out;
}

bool tls_block(uintptr_t* lo, size_t* size) {
  const Module& m = module();
  if (!m.has_tls) return false;
  TlsQuery q{m.base};
  dl_iterate_phdr(tls_cb, &q);
  if (!q.found) return false;
  *lo = q.lo;
  *size = m.tls_memsz;
  return true;
}

}  // namespace infer::simt::detail
