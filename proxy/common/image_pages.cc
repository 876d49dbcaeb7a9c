#include "proxy/common/image_pages.h"

#include <fcntl.h>
#include <link.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <vector>

namespace skiff {
namespace {

// /proc/self/pagemap: one 64-bit entry per virtual page. Bit 63: present;
// bit 61: file page or shared anonymous. A present page without bit 61 is a
// private copy: a debugger's breakpoint or a uprobe written into the code, or
// a text relocation. Those must keep their contents, so they are skipped.
constexpr uint64_t kPresent = uint64_t{1} << 63;
constexpr uint64_t kFileOrShared = uint64_t{1} << 61;

struct Walk {
  int pagemap = -1;
  uintptr_t page = 4096;
  size_t advised = 0;
  std::vector<uint64_t> entries;
};

void release(Walk& w, uintptr_t lo, uintptr_t hi) {
  size_t n = (hi - lo) / w.page;
  w.entries.resize(n);
  off_t at = static_cast<off_t>(lo / w.page * sizeof(uint64_t));
  size_t bytes = n * sizeof(uint64_t);
  if (pread(w.pagemap, w.entries.data(), bytes, at) != static_cast<ssize_t>(bytes)) return;
  // Advise each run of pages that holds no private copy.
  size_t run = 0;
  for (size_t i = 0; i <= n; ++i) {
    bool keep = i == n || ((w.entries[i] & kPresent) != 0 && (w.entries[i] & kFileOrShared) == 0);
    if (!keep) continue;
    if (i > run) {
      void* start = reinterpret_cast<void*>(lo + run * w.page);
      if (madvise(start, (i - run) * w.page, MADV_DONTNEED) == 0) w.advised += (i - run) * w.page;
    }
    run = i + 1;
  }
}

}  // namespace

size_t releaseReadOnlyImagePages() {
  Walk walk;
  walk.pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  walk.page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  if (walk.pagemap < 0) return 0;  // Without it, private copies cannot be told apart.
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* arg) -> int {
        auto& w = *static_cast<Walk*>(arg);
        // The program itself has an empty name, libraries an absolute path;
        // the vDSO (a kernel mapping, "linux-vdso.so.1") is left alone.
        const char* name = info->dlpi_name;
        if (name != nullptr && name[0] != '\0' && name[0] != '/') return 0;
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const ElfW(Phdr)& ph = info->dlpi_phdr[i];
          if (ph.p_type != PT_LOAD || (ph.p_flags & PF_W) != 0) continue;
          // Only whole pages inside the segment: a page shared with a writable
          // neighbour must keep its contents.
          uintptr_t start = info->dlpi_addr + ph.p_vaddr;
          uintptr_t lo = (start + w.page - 1) & ~(w.page - 1);
          uintptr_t hi = (start + ph.p_memsz) & ~(w.page - 1);
          if (hi > lo) release(w, lo, hi);
        }
        return 0;
      },
      &walk);
  close(walk.pagemap);
  return walk.advised;
}

}  // namespace skiff
