#pragma once

#include <cstddef>

namespace skiff {

// Drops this process's page-table mappings of the read-only segments (code and
// constants) of the program and of every library it loaded, and returns how
// many bytes of address space it advised.
//
// Why: the proxy's resident set is mostly pages of code, and most of the code a
// start runs (YAML, JSON and protobuf parsing, descriptor building, the
// translator, static initializers of ~70 generated API files) is not run
// again while serving. The kernel maps file pages 64 KiB at a time around a
// fault, so a start leaves about 4 MiB of the binary mapped that the request
// path never reads. With MADV_DONTNEED those pages stay in the page cache,
// clean and reclaimable; a page still needed is mapped again by a minor fault
// on its next use. Writable segments (relocated data, .data, .bss) are never
// touched: dropping them would lose their contents. Nor is a read-only page
// that holds a private copy (a debugger's breakpoint, a uprobe, a text
// relocation), found through /proc/self/pagemap; without that file nothing is
// released.
size_t releaseReadOnlyImagePages();

}  // namespace skiff
