// An ordered map from string to V that is a value: copying it copies one
// pointer, and set() or erase() on a copy makes O(log n) new nodes while
// every other copy keeps seeing what it saw (path copying; nodes are never
// changed once made, so copies may be read from any thread).
//
// Configuration snapshots are built from these maps (DESIGN.md,
// "Configuration is data, swapped whole"): the main thread makes the next
// snapshot by copying the last one and setting the few entries that
// changed, so one cluster changing among thousands costs a path of nodes,
// not a copy of the map.
//
// A treap: each node's priority is a hash of its key, so the tree is
// balanced in expectation whatever the order of insertion.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace skiff {

template <typename V>
class PersistentMap {
 public:
  using value_type = std::pair<const std::string, V>;

  class Iterator;

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // The value under key, or null.
  const V* get(std::string_view key) const {
    const Node* n = root_.get();
    while (n != nullptr) {
      int c = key.compare(n->kv.first);
      if (c == 0) return &n->kv.second;
      n = c < 0 ? n->left.get() : n->right.get();
    }
    return nullptr;
  }
  size_t count(std::string_view key) const { return get(key) != nullptr ? 1 : 0; }
  const V& at(std::string_view key) const {
    const V* v = get(key);
    if (v == nullptr) throw std::out_of_range("PersistentMap::at: " + std::string(key));
    return *v;
  }

  // Adds key, or replaces its value.
  void set(std::string key, V value) {
    bool added = false;
    uint64_t priority = priorityOf(key);
    root_ = insert(root_, value_type(std::move(key), std::move(value)), priority, added);
    if (added) ++size_;
  }
  // False when key was not there.
  bool erase(std::string_view key) {
    bool removed = false;
    root_ = remove(root_, key, removed);
    if (removed) --size_;
    return removed;
  }

  // Longest path from the root, in nodes (for tests: about 2 log2(n)).
  size_t depth() const { return depthOf(root_.get()); }

  Iterator begin() const { return Iterator(root_.get()); }
  Iterator end() const { return Iterator(nullptr); }

 private:
  struct Node {
    value_type kv;
    uint64_t priority;
    std::shared_ptr<const Node> left;
    std::shared_ptr<const Node> right;
  };
  using Ptr = std::shared_ptr<const Node>;

 public:
  // In key order. Holds a path of the tree, so it stays valid while the map
  // it came from (or any copy) is alive.
  class Iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = PersistentMap::value_type;
    using difference_type = std::ptrdiff_t;
    using pointer = const value_type*;
    using reference = const value_type&;

    reference operator*() const { return path_.back()->kv; }
    pointer operator->() const { return &path_.back()->kv; }
    Iterator& operator++() {
      const Node* n = path_.back();
      path_.pop_back();
      descendLeft(n->right.get());
      return *this;
    }
    bool operator==(const Iterator& other) const {
      if (path_.empty() || other.path_.empty()) return path_.empty() == other.path_.empty();
      return path_.back() == other.path_.back();
    }

   private:
    friend class PersistentMap;
    explicit Iterator(const Node* root) { descendLeft(root); }
    void descendLeft(const Node* n) {
      for (; n != nullptr; n = n->left.get()) path_.push_back(n);
    }
    std::vector<const Node*> path_;  // Nodes whose key is still to come; back() is current.
  };

 private:
  static uint64_t priorityOf(std::string_view key) {
    // splitmix64's finalizer over the standard hash: well spread even when
    // the standard hash is weak.
    uint64_t x = std::hash<std::string_view>{}(key);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
  }
  static size_t depthOf(const Node* n) {
    return n == nullptr ? 0 : 1 + std::max(depthOf(n->left.get()), depthOf(n->right.get()));
  }
  static Ptr make(value_type kv, uint64_t priority, Ptr left, Ptr right) {
    return std::make_shared<const Node>(
        Node{std::move(kv), priority, std::move(left), std::move(right)});
  }

  static Ptr insert(const Ptr& n, value_type&& kv, uint64_t priority, bool& added) {
    if (!n) {
      added = true;
      return make(std::move(kv), priority, nullptr, nullptr);
    }
    int c = std::string_view(kv.first).compare(n->kv.first);
    if (c == 0) return make(std::move(kv), n->priority, n->left, n->right);
    if (c < 0) {
      Ptr left = insert(n->left, std::move(kv), priority, added);
      if (left->priority > n->priority) {  // Rotate right: the new node rises.
        return make(left->kv, left->priority, left->left,
                    make(n->kv, n->priority, left->right, n->right));
      }
      return make(n->kv, n->priority, std::move(left), n->right);
    }
    Ptr right = insert(n->right, std::move(kv), priority, added);
    if (right->priority > n->priority) {  // Rotate left.
      return make(right->kv, right->priority, make(n->kv, n->priority, n->left, right->left),
                  right->right);
    }
    return make(n->kv, n->priority, n->left, std::move(right));
  }

  static Ptr remove(const Ptr& n, std::string_view key, bool& removed) {
    if (!n) return n;
    int c = key.compare(n->kv.first);
    if (c == 0) {
      removed = true;
      return join(n->left, n->right);
    }
    if (c < 0) {
      Ptr left = remove(n->left, key, removed);
      return removed ? make(n->kv, n->priority, std::move(left), n->right) : n;
    }
    Ptr right = remove(n->right, key, removed);
    return removed ? make(n->kv, n->priority, n->left, std::move(right)) : n;
  }

  // Every key under a is less than every key under b.
  static Ptr join(const Ptr& a, const Ptr& b) {
    if (!a) return b;
    if (!b) return a;
    if (a->priority > b->priority) return make(a->kv, a->priority, a->left, join(a->right, b));
    return make(b->kv, b->priority, join(a, b->left), b->right);
  }

  Ptr root_;
  size_t size_ = 0;
};

}  // namespace skiff
