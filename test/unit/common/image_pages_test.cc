#include "proxy/common/image_pages.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace skiff {
namespace {

// Resident KiB of the test binary's mappings, read-only ones or writable ones.
size_t residentKib(bool writable) {
  std::ifstream smaps("/proc/self/smaps");
  std::string exe = std::filesystem::read_symlink("/proc/self/exe").string();
  std::string line;
  bool counting = false;
  size_t kib = 0;
  while (std::getline(smaps, line)) {
    std::istringstream in(line);
    std::string range, perms, offset, dev, inode, path;
    in >> range >> perms;
    if (range.find('-') != std::string::npos && perms.size() == 4) {
      in >> offset >> dev >> inode >> path;
      counting = path == exe && (perms[1] == 'w') == writable;
    } else if (counting && range == "Rss:") {
      kib += std::stoul(perms);  // "Rss:  123 kB": the second word is the size.
    }
  }
  return kib;
}

// A page of constants that the test writes into, as a debugger writes a
// breakpoint into code: the page becomes a private copy, which must survive.
alignas(4096) const char kPatched[4096] = "original";

// Relocated at start (a PIE's pointers live in writable pages, made read-only
// afterwards): these must survive the release.
const char* const kWords[] = {"alpha", "beta", "gamma"};
int counter = 41;

TEST(ReleaseReadOnlyImagePages, DropsCodePagesAndKeepsData) {
  char* patched = const_cast<char*>(kPatched);
  ASSERT_EQ(mprotect(patched, sizeof kPatched, PROT_READ | PROT_WRITE), 0);
  static_cast<volatile char*>(patched)[0] = 'O';
  ASSERT_EQ(mprotect(patched, sizeof kPatched, PROT_READ), 0);
  size_t code_before = residentKib(false);
  size_t data_before = residentKib(true);
  ASSERT_GT(code_before, 0u);
  EXPECT_GT(releaseReadOnlyImagePages(), 0u);
  size_t code_after = residentKib(false);
  // Code used again (this test, the smaps reader) comes back by page faults;
  // what the test binary's start ran does not.
  EXPECT_LT(code_after, code_before);
  EXPECT_EQ(residentKib(true), data_before);
  EXPECT_STREQ(kWords[0], "alpha");
  EXPECT_STREQ(kWords[2], "gamma");
  EXPECT_EQ(++counter, 42);
  EXPECT_EQ(static_cast<const volatile char*>(kPatched)[0], 'O');
}

}  // namespace
}  // namespace skiff
