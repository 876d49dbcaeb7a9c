#include "proxy/common/image_pages.h"

#include <link.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>

namespace skiff {

size_t releaseReadOnlyImagePages() {
  struct Walk {
    uintptr_t page;
    size_t advised = 0;
  } walk{static_cast<uintptr_t>(sysconf(_SC_PAGESIZE))};
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
          if (hi <= lo) continue;
          if (madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED) == 0) {
            w.advised += hi - lo;
          }
        }
        return 0;
      },
      &walk);
  return walk.advised;
}

}  // namespace skiff
