// The walk of a module tree that plans init_module_ (nspl_filler/plan.py): one pass over the
// modules in named_modules(remove_duplicate=False) order, a parameter per row under its first
// qualified name, as columns of Python lists, and for each row the kind of parameter it is: what
// of it (its owner's type, own name, shape, ...) decides its role, fans and default rule. The
// planner works each kind out once in Python, so a model of 10^5 parameters costs Python a few
// list operations per parameter. Python-facing: included by bindings.cpp only.
#pragma once

#include <torch/csrc/autograd/python_variable.h>
#include <torch/csrc/autograd/variable.h>
#include <structmember.h>
#include <torch/extension.h>

#include "nspl_filler/stream.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace nspl {

namespace py = pybind11;

namespace walk {

// What the walk asks of a module type once: whether its instances read `groups` or
// `is_transposed` from the class (then through getattr, else from the instance's __dict__,
// which spares nn.Module.__getattr__'s AttributeError for the types that have neither), and
// whether the caller collects its instances.
struct TypeInfo {
  bool class_groups;
  bool class_transposed;
  bool collect;
};

// The owner's attribute `name`, as Python's getattr(owner, name, None) gives it for a type
// that has it, else the instance's own (None where it has none). A new reference.
inline py::object owner_attribute(py::handle owner, bool on_class, const py::str& name) {
  if (on_class) return py::getattr(owner, name, py::none());
  PyObject** dict = _PyObject_GetDictPtr(owner.ptr());
  if (dict == nullptr || *dict == nullptr) return py::none();
  PyObject* value = PyDict_GetItemWithError(*dict, name.ptr());  // borrowed
  if (value == nullptr && PyErr_Occurred()) throw py::error_already_set();
  return value == nullptr ? py::none() : py::reinterpret_borrow<py::object>(value);
}

// The value of `name` in the instance dict `dict` (borrowed), or a null handle.
inline py::handle own_item(PyObject* dict, const py::str& name) {
  PyObject* value = PyDict_GetItemWithError(dict, name.ptr());
  if (value == nullptr && PyErr_Occurred()) throw py::error_already_set();
  return py::handle(value);
}

inline void append_bytes(std::string& key, const void* data, size_t size) {
  key.append(static_cast<const char*>(data), size);
}

// The UTF-8 of str `text` appended to `out`.
inline void append_text(std::string& out, PyObject* text) {
  Py_ssize_t size = 0;
  const char* data = PyUnicode_AsUTF8AndSize(text, &size);
  if (data == nullptr) throw py::error_already_set();
  out.append(data, static_cast<size_t>(size));
}

// Its length, then its UTF-8: a part of a key that no other text can run into.
inline void append_key_text(std::string& out, PyObject* text) {
  Py_ssize_t size = 0;
  const char* data = PyUnicode_AsUTF8AndSize(text, &size);
  if (data == nullptr) throw py::error_already_set();
  const uint64_t length = static_cast<uint64_t>(size);
  append_bytes(out, &length, sizeof length);
  out.append(data, static_cast<size_t>(size));
}

// The types of `plain_types` (torch.Tensor and nn.Parameter), whose instances unpack to a
// Tensor and answer as it does; and whether `object` is exactly of one of them.
inline std::vector<PyObject*> type_list(py::tuple plain_types) {
  std::vector<PyObject*> types;
  for (py::handle kind : plain_types) types.push_back(kind.ptr());
  return types;
}
inline bool of_type_in(PyObject* object, const std::vector<PyObject*>& types) {
  return std::find(types.begin(), types.end(), reinterpret_cast<PyObject*>(Py_TYPE(object))) != types.end();
}

inline bool text_equals(PyObject* text, const char* expected) {
  return PyUnicode_CompareWithASCIIString(text, expected) == 0;
}

inline py::str interned(const char* text) {
  return py::reinterpret_steal<py::str>(PyUnicode_InternFromString(text));
}

// list.append of a borrowed reference / of a new reference, which the list takes.
inline void append(py::list& list, PyObject* item) {
  if (PyList_Append(list.ptr(), item) != 0) throw py::error_already_set();
}
inline void append_new(py::list& list, PyObject* item) {
  if (item == nullptr) throw py::error_already_set();
  const int failed = PyList_Append(list.ptr(), item);
  Py_DECREF(item);
  if (failed != 0) throw py::error_already_set();
}

// `name` with each run of digits as one '\1': the qualified names of the same parameter of
// repeated modules (layers.0.fc.weight, layers.17.fc.weight) share it, and so does whether a
// glob of '*' and other characters than digits matches them (the planner relies on it).
inline void append_skeleton(std::string& out, const std::string& name) {
  const size_t at = out.size();
  uint64_t size = 0;
  append_bytes(out, &size, sizeof size);  // its length, once known: keys of texts stay unambiguous
  bool in_digits = false;
  for (const char c : name) {
    const bool digit = c >= '0' && c <= '9';
    if (!digit) out.push_back(c);
    else if (!in_digits) out.push_back('\1');
    in_digits = digit;
  }
  size = out.size() - at - sizeof size;
  std::memcpy(&out[at], &size, sizeof size);
}

// Whether `value` holds no reference that could lead back to an object holding it: a value the
// cyclic collector does not track (str, int, float, None) or an exact tuple of such values
// (two levels deep). CPython untracks its own tuples and dicts of atomic values on this ground.
inline bool atomic(PyObject* value, int depth = 2) {
  if (!PyObject_IS_GC(value)) return true;
  if (depth == 0 || !PyTuple_CheckExact(value)) return false;
  for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(value); ++i) {
    if (!atomic(PyTuple_GET_ITEM(value, i), depth - 1)) return false;
  }
  return true;
}

constexpr const char* kFlatParam = "_flat_param";  // FSDP's flat parameter: planned on its own

// An allocator whose blocks of 2 MiB and more lie on 2 MiB pages where the system has them
// (Linux's transparent huge pages, on request): a table of that size probed at random costs a
// TLB miss per probe on 4 KiB pages, and one of a few entries on these.
template <class T>
struct LargePages {
  using value_type = T;
  static constexpr size_t kPage = size_t{2} << 20;
  LargePages() = default;
  template <class U>
  LargePages(const LargePages<U>&) noexcept {}
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  static bool large(size_t count) { return count * sizeof(T) >= kPage; }
#else
  static bool large(size_t) { return false; }
#endif
  T* allocate(size_t count) {
    if (count > std::numeric_limits<size_t>::max() / sizeof(T) - kPage) throw std::bad_alloc();
    if (!large(count)) return static_cast<T*>(::operator new(count * sizeof(T)));
    const size_t bytes = (count * sizeof(T) + kPage - 1) / kPage * kPage;
    void* block = std::aligned_alloc(kPage, bytes);
    if (block == nullptr) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    madvise(block, bytes, MADV_HUGEPAGE);  // advice: where the system declines, 4 KiB pages serve
#endif
    return static_cast<T*>(block);
  }
  void deallocate(T* block, size_t count) noexcept {
    if (large(count)) {
      std::free(block);
    } else {
      ::operator delete(block);
    }
  }
  template <class U>
  bool operator==(const LargePages<U>&) const noexcept { return true; }
  template <class U>
  bool operator!=(const LargePages<U>&) const noexcept { return false; }
};

// The row of each parameter met so far, by object: open addressing in one array (a model
// has up to 10^5 parameters, and a map of nodes would cost a cache miss or two per lookup).
class RowOf {
 public:
  // {the row of `object`, true} if it is new (then `row` is recorded), else {its row, false}.
  std::pair<int64_t, bool> emplace(PyObject* object, int64_t row) {
    if (2 * (count_ + 1) > slots_.size()) grow();
    Slot& slot = find(slots_, object);
    if (slot.object == object) return {slot.row, false};
    slot = Slot{object, row};
    ++count_;
    return {row, true};
  }

  // Room for `count` objects in all, made at once rather than by doubling (each doubling moves
  // every slot, a cache miss apiece in a large table).
  void reserve(size_t count) {
    size_t size = slots_.empty() ? 64 : slots_.size();
    while (size < 2 * count) size *= 2;
    if (size > slots_.size()) rehash(size);
  }

  // Asks the memory for the slot that emplace(object, ...) probes first (walk_modules reads
  // ahead).
  void prefetch(PyObject* object) const {
    if (!slots_.empty()) __builtin_prefetch(&slots_[home(object, slots_.size() - 1)]);
  }

 private:
  struct Slot {
    PyObject* object = nullptr;
    int64_t row = 0;
  };
  // The first slot probed for `object` in a table of mask + 1 slots.
  static size_t home(PyObject* object, size_t mask) {
    // Fibonacci hashing: the product's high bits, which every bit of the address mixes into.
    // (Its low bits depend only on the address's low bits, and objects of one size class lie
    // at a fixed stride, 80 bytes for a Parameter under CPython 3.11: they reached some slots
    // only, in runs.)
    const uint64_t mixed = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(object) >> 4) * 0x9E3779B97F4A7C15ull;
    return static_cast<size_t>(mixed >> __builtin_clzll(static_cast<uint64_t>(mask))) & mask;  // mask + 1 >= 64
  }
  using Slots = std::vector<Slot, LargePages<Slot>>;
  static Slot& find(Slots& slots, PyObject* object) {
    const size_t mask = slots.size() - 1;
    size_t at = home(object, mask);
    while (slots[at].object != nullptr && slots[at].object != object) at = (at + 1) & mask;
    return slots[at];
  }
  void grow() { rehash(slots_.empty() ? 64 : 2 * slots_.size()); }
  void rehash(size_t size) {
    Slots larger(size);
    const size_t mask = larger.size() - 1;
    constexpr size_t kAhead = 16;  // a table past the caches: ask for each home slot early
    for (size_t at = 0; at < slots_.size(); ++at) {
      if (at + kAhead < slots_.size() && slots_[at + kAhead].object != nullptr) {
        __builtin_prefetch(&larger[home(slots_[at + kAhead].object, mask)], 1);
      }
      if (slots_[at].object != nullptr) find(larger, slots_[at].object) = slots_[at];
    }
    slots_.swap(larger);
  }
  Slots slots_;
  size_t count_ = 0;
};

}  // namespace walk

// walk_modules(root, attributes, plain_types, collect) -> (names, local_names, tensors, owners,
// parents, kinds, examples, tied, types, collected, plain, meta):
//   names[k], local_names[k], tensors[k], owners[k], parents[k]: row k's first qualified name,
//     own name, tensor, owning module and that module's name in its parent (None at the root);
//   kinds[k]: the index of the row's kind in `examples` (the first row of each kind), or -1
//     for a row the planner takes on its own: a tied parameter (held under several names), one
//     whose owner has forward pre-hooks (an old-style weight norm), one whose type is not in
//     `plain_types`, FSDP's flat parameter, or one with symbolic sizes;
//   tied: {row: [(qualified name, own name, owner), ...]} the other names of tied rows;
//   types: the type of every module visited, each once, in the order first met;
//   collected: every module visited (a shared module each time it is reached) whose type is a
//     subclass of a type in the tuple `collect`, so that a caller after the modules of a few
//     types makes no pass of its own over a model of 10^5 modules;
//   plain: whether every tensor's type is in `plain_types`;
//   meta: whether, besides, every tensor is on the meta device (none has values to measure).
// A row's kind is (owner's type, the owner's name in its parent where it is one of
// `attributes`, whether the owner is transposed, its groups (where a positive int, else 1),
// own name, requires_grad, the qualified name with its runs of digits as one mark, tensor
// type, sizes): everything the planner's decisions read but the names' digits.
inline py::tuple walk_modules(py::handle root, py::object attributes, py::tuple plain_types, py::tuple collect) {
  for (py::handle kind : collect) {
    if (!PyType_Check(kind.ptr())) throw py::type_error("nspl_filler: walk_modules collects instances of types only");
  }
  py::list names, local_names, tensors, owners, parents, kinds, examples, types, collected;
  size_t visited = 0;  // modules visited so far
  py::dict tied;
  bool plain = true, meta = true;
  walk::RowOf first;                                    // parameter -> its row
  std::unordered_map<PyObject*, walk::TypeInfo> infos;  // module type -> what the walk asks of it
  std::unordered_map<std::string, int64_t> kind_of;     // kind key -> index in examples
  // Interned, as attribute names are: dict lookups then match by identity.
  const py::str parameters_name = walk::interned("_parameters"), modules_name = walk::interned("_modules"),
                hooks_name = walk::interned("_forward_pre_hooks"), groups_name = walk::interned("groups"),
                transposed_name = walk::interned("is_transposed");
  const std::vector<PyObject*> plain_list = walk::type_list(plain_types);

  struct Frame {
    std::string prefix;    // qualified name of the module and a dot ("" at the root)
    py::object attribute;  // its name in its parent (None at the root)
    py::object module;
    py::object params;     // its _parameters dict, once reading ahead has found it (see below)
  };
  std::vector<Frame, walk::LargePages<Frame>> stack;  // a Sequential of 10^5 modules: megabytes
  // What the walk of a module reads lies in a chain of objects (the module, its __dict__, the
  // dicts it holds, each parameter, its TensorImpl and AutogradMeta, the parameter's slot in
  // `first`), and in a model larger than a core's caches each link is a cache miss that waits
  // for the one before. So the walk reads ahead in a pipeline: before it visits a module, it
  // takes one step along the chain of each of the kStages modules kSpacing, 2 * kSpacing, ...
  // places down the stack (step 0, the module itself, for the farthest). A step only asks the
  // memory for the links it finds (a prefetch, which the processor serves while the walk works
  // on) and reads only links an earlier step asked for, so the walk waits on none; the lines
  // asked for are those the visit reads, no more, since the misses a core can have in flight
  // bound the walk of a large model. A module reaches the top of the stack with its chain in
  // the caches where its siblings were pushed together (the layers of a Sequential or
  // ModuleList, the common case). Reading ahead holds the _parameters dict it finds (a
  // reference), so no step reads an object that Python code run meanwhile (a property read
  // through getattr) could have freed; the visit reads everything afresh. Below
  // kReadAheadAfter rows a model's objects stay in the caches from one walk to the next and
  // reading ahead only adds work.
  constexpr size_t kStages = 8, kSpacing = 1;
  constexpr Py_ssize_t kReadAheadAfter = 4096;
  auto fetch = [](const void* at) { __builtin_prefetch(at); };
  auto fetch_lines = [&](const void* at, size_t size) {  // every 64-byte line of [at, at + size)
    const uintptr_t from = reinterpret_cast<uintptr_t>(at), to = from + size;
    for (uintptr_t line = from & ~uintptr_t{63}; line < to; line += 64) fetch(reinterpret_cast<const void*>(line));
  };
  // The tensors of `params` whose type is plain (borrowed), for the steps that read into them.
  auto plain_values = [&](PyObject* params, auto&& each) {
    PyObject* local = nullptr;
    PyObject* value = nullptr;
    Py_ssize_t position = 0;
    while (PyDict_Next(params, &position, &local, &value)) {
      if (walk::of_type_in(value, plain_list)) each(THPVariable_Unpack(value).unsafeGetTensorImpl());
    }
  };
  // Step `step` (0 first) of reading the chain of `frame` ahead.
  auto read_ahead = [&](Frame& frame, size_t step) {
    PyObject* module = frame.module.ptr();
    switch (step) {
      case 0:  // the module (with the words before it, where CPython keeps its __dict__) and its name
        fetch(reinterpret_cast<const char*>(module) - 32);
        fetch(module);
        fetch(frame.attribute.ptr());
        return;
      case 1:
      case 2:
      case 3:
      case 4: {
        PyObject** dict = _PyObject_GetDictPtr(module);
        if (dict == nullptr || *dict == nullptr) return;
        if (step == 1) {  // the step that finds an object asks for it, and reads it a step later
          fetch(*dict);
          return;
        }
        if (!PyDict_CheckExact(*dict)) return;
        PyDictObject* d = reinterpret_cast<PyDictObject*>(*dict);
        if (step == 2) {
          fetch(d->ma_keys);
          if (d->ma_values != nullptr) fetch_lines(d->ma_values, 192);
          return;
        }
        if (step == 3) {
          for (PyObject* name : {parameters_name.ptr(), modules_name.ptr(), hooks_name.ptr()}) {
            PyObject* item = PyDict_GetItem(*dict, name);  // borrowed; a failed lookup is no error here
            if (item != nullptr) fetch(item);
          }
          return;
        }
        // Step 4: the _parameters dict, asked for at step 3, is held from here on.
        PyObject* params = PyDict_GetItem(*dict, parameters_name.ptr());
        if (params == nullptr || !PyDict_CheckExact(params)) return;
        frame.params = py::reinterpret_borrow<py::object>(params);
        fetch_lines(reinterpret_cast<PyDictObject*>(params)->ma_keys, 128);
        return;
      }
      default:
        break;
    }
    if (!frame.params) return;
    PyObject* params = frame.params.ptr();
    if (step == 5) {
      PyObject* local = nullptr;
      PyObject* value = nullptr;
      Py_ssize_t position = 0;
      while (PyDict_Next(params, &position, &local, &value)) {
        fetch(value);
        first.prefetch(value);
      }
    } else if (step == 6) {
      plain_values(params, [&](const c10::TensorImpl* impl) { fetch_lines(impl, sizeof(c10::TensorImpl)); });
    } else {
      plain_values(params, [&](const c10::TensorImpl* impl) {
        // What requires_grad() reads: the vtable, requires_grad_ and grad_fn_.
        const auto* meta = static_cast<const torch::autograd::AutogradMeta*>(impl->autograd_meta());
        if (meta == nullptr) return;
        fetch(meta);
        fetch(&meta->requires_grad_);
        fetch(&meta->grad_fn_);
      });
    }
  };
  stack.push_back({std::string(), py::none(), py::reinterpret_borrow<py::object>(root), py::object()});
  std::string owner_key, key, name;  // buffers, reused
  bool reserved = false;
  while (!stack.empty()) {
    const Py_ssize_t rows = PyList_GET_SIZE(names.ptr());
    if (rows >= kReadAheadAfter) {
      const size_t size = stack.size();
      if (!reserved) {
        // A model this large has as many rows again for each module still on the stack as
        // each module walked so far had: room for them all in `first` at once.
        const double per_module = static_cast<double>(rows) / static_cast<double>(visited);
        first.reserve(static_cast<size_t>(std::min(static_cast<double>(rows) + per_module * static_cast<double>(size), 1e6)));
        reserved = true;
      }
      // The stack's own frames, a few beyond the deepest step.
      constexpr size_t kFrameAhead = (kStages + 2) * kSpacing;
      if (kFrameAhead < size) fetch(&stack[size - 1 - kFrameAhead]);
      for (size_t step = 0; step < kStages; ++step) {
        const size_t down = (kStages - step) * kSpacing;  // places below the top
        if (down < size) read_ahead(stack[size - 1 - down], step);
      }
    }
    Frame frame = std::move(stack.back());
    stack.pop_back();
    py::handle owner = frame.module;
    ++visited;
    PyObject* type = reinterpret_cast<PyObject*>(Py_TYPE(owner.ptr()));
    auto info = infos.find(type);
    if (info == infos.end()) {
      py::handle kind(type);
      bool collect_it = false;
      for (py::handle base : collect) {
        collect_it = collect_it || PyType_IsSubtype(Py_TYPE(owner.ptr()), reinterpret_cast<PyTypeObject*>(base.ptr()));
      }
      info = infos
                 .emplace(type, walk::TypeInfo{py::hasattr(kind, "groups"), py::hasattr(kind, "is_transposed"),
                                               collect_it})
                 .first;
      types.append(kind);
    }
    if (info->second.collect) collected.append(owner);
    // nn.Module keeps these in the instance's __dict__: read there, not through getattr.
    PyObject** own = _PyObject_GetDictPtr(owner.ptr());
    if (own == nullptr || *own == nullptr) throw py::type_error("nspl_filler: a module without __dict__");
    py::handle params = walk::own_item(*own, parameters_name);
    if (params && PyDict_Check(params.ptr()) && PyDict_GET_SIZE(params.ptr()) > 0) {
      py::handle hooks = walk::own_item(*own, hooks_name);
      const bool hooked = !hooks || PyObject_IsTrue(hooks.ptr()) != 0;
      // The owner's part of the kind key (as the planner's templates read it); empty: none.
      owner_key.clear();
      if (!hooked) {
        walk::append_bytes(owner_key, &type, sizeof type);
        py::object transposed = walk::owner_attribute(owner, info->second.class_transposed, transposed_name);
        owner_key.push_back(transposed.ptr() == Py_True ? 1 : 0);
        py::object groups = walk::owner_attribute(owner, info->second.class_groups, groups_name);
        int64_t group_count = 1;
        if (PyLong_Check(groups.ptr()) && !PyBool_Check(groups.ptr())) {
          int overflow = 0;
          const long long value = PyLong_AsLongLongAndOverflow(groups.ptr(), &overflow);
          if (overflow == 0 && value > 0) group_count = value;
          if (overflow > 0) group_count = -1;  // too large to key here: the row is planned on its own
        }
        walk::append_bytes(owner_key, &group_count, sizeof group_count);
        if (!frame.attribute.is_none() && PySet_Contains(attributes.ptr(), frame.attribute.ptr()) == 1) {
          walk::append_key_text(owner_key, frame.attribute.ptr());
        } else {
          owner_key.push_back('\0');  // no attribute (a text's length is 8 bytes: this key is shorter)
        }
        if (group_count < 0) owner_key.clear();
      }
      PyObject* local = nullptr;
      PyObject* value = nullptr;
      Py_ssize_t position = 0;
      while (PyDict_Next(params.ptr(), &position, &local, &value)) {
        if (value == Py_None) continue;
        name.assign(frame.prefix);
        walk::append_text(name, local);
        py::object qualified = py::reinterpret_steal<py::object>(
            PyUnicode_FromStringAndSize(name.data(), static_cast<Py_ssize_t>(name.size())));
        if (!qualified) throw py::error_already_set();
        const int64_t row = static_cast<int64_t>(PyList_GET_SIZE(names.ptr()));
        const auto found = first.emplace(value, row);
        if (!found.second) {
          // A parameter met before under another name: the first row takes this name as an alias,
          // and is planned on its own.
          py::object index = py::int_(found.first);
          py::object aliases = tied.attr("setdefault")(index, py::list());
          aliases.attr("append")(py::make_tuple(qualified, py::handle(local), owner));
          kinds[found.first] = py::int_(-1);
          continue;
        }
        PyObject* tensor_type = reinterpret_cast<PyObject*>(Py_TYPE(value));
        const bool is_plain = walk::of_type_in(value, plain_list);
        plain = plain && is_plain;
        meta = meta && is_plain && THPVariable_Unpack(value).is_meta();
        int64_t kind = -1;
        // plain_types are torch.Tensor and its subclass nn.Parameter: their instances unpack.
        if (is_plain && !owner_key.empty() && !walk::text_equals(local, walk::kFlatParam)) {
          const at::Tensor& tensor = THPVariable_Unpack(value);
          if (!tensor.unsafeGetTensorImpl()->has_symbolic_sizes_strides()) {
            key.assign(owner_key);
            walk::append_key_text(key, local);
            key.push_back(tensor.requires_grad() ? 1 : 0);
            walk::append_skeleton(key, name);
            walk::append_bytes(key, &tensor_type, sizeof tensor_type);
            const auto sizes = tensor.sizes();
            walk::append_bytes(key, sizes.data(), sizes.size() * sizeof(int64_t));
            auto known = kind_of.find(key);
            if (known == kind_of.end()) {
              known = kind_of.emplace(key, static_cast<int64_t>(kind_of.size())).first;
              examples.append(row);
            }
            kind = known->second;
          }
        }
        walk::append_new(names, qualified.release().ptr());
        walk::append(local_names, local);
        walk::append(tensors, value);
        walk::append(owners, owner.ptr());
        walk::append(parents, frame.attribute.ptr());
        walk::append_new(kinds, PyLong_FromLongLong(kind));
      }
    }
    py::handle children = walk::own_item(*own, modules_name);
    if (children && PyDict_Check(children.ptr()) && PyDict_GET_SIZE(children.ptr()) > 0) {
      // Pushed, then reversed in place, so that the first child is walked first.
      const size_t bottom = stack.size();
      PyObject* child_name = nullptr;
      PyObject* child = nullptr;
      Py_ssize_t position = 0;
      // Taking a reference to a child writes to it and reading its name reads it: in a large
      // model each is a cache miss, asked for here kChildrenAhead children early.
      constexpr int kChildrenAhead = 16;
      Py_ssize_t ahead = 0;
      auto fetch_next = [&] {  // the next child ahead and its name; false past the last
        PyObject* ahead_name = nullptr;
        PyObject* ahead_child = nullptr;
        if (!PyDict_Next(children.ptr(), &ahead, &ahead_name, &ahead_child)) return false;
        fetch(ahead_name);
        fetch(ahead_child);
        return true;
      };
      for (int k = 0; k < kChildrenAhead; ++k) {
        if (!fetch_next()) break;
      }
      while (PyDict_Next(children.ptr(), &position, &child_name, &child)) {
        fetch_next();
        if (child == Py_None) continue;
        std::string prefix = frame.prefix;
        walk::append_text(prefix, child_name);
        prefix.push_back('.');
        stack.push_back({std::move(prefix), py::reinterpret_borrow<py::object>(child_name),
                          py::reinterpret_borrow<py::object>(child), py::object()});
      }
      std::reverse(stack.begin() + static_cast<std::ptrdiff_t>(bottom), stack.end());
    }
  }
  return py::make_tuple(names, local_names, tensors, owners, parents, kinds, examples, tied, types, collected, plain,
                        meta);
}

// tensor_facts(tensors, plain_types) -> (blocks, inference, one_device), what a bulk write of
// many tensors asks of each, in one C++ pass; None if any tensor's type is not in
// `plain_types` (a subclass may answer otherwise: the caller asks each tensor in Python):
//   blocks[k]: the Philox blocks a fill of tensors[k] consumes (blocks_for, stream.h);
//   inference: the indices of the inference tensors;
//   one_device: whether every tensor is on the device of the first (True for none).
inline py::object tensor_facts(py::list tensors, py::tuple plain_types) {
  const std::vector<PyObject*> plain_list = walk::type_list(plain_types);
  const Py_ssize_t count = PyList_GET_SIZE(tensors.ptr());
  py::list blocks(count), inference;
  bool one_device = true;
  std::optional<c10::Device> first;
  for (Py_ssize_t k = 0; k < count; ++k) {
    PyObject* item = PyList_GET_ITEM(tensors.ptr(), k);
    if (!walk::of_type_in(item, plain_list)) return py::none();
    const at::Tensor& tensor = THPVariable_Unpack(item);
    PyObject* count_of = PyLong_FromUnsignedLongLong(blocks_for(tensor.numel(), tensor.scalar_type()));
    if (count_of == nullptr) throw py::error_already_set();
    PyList_SET_ITEM(blocks.ptr(), k, count_of);
    if (tensor.is_inference()) walk::append_new(inference, PyLong_FromSsize_t(k));
    if (!first) first = tensor.device();
    one_device = one_device && tensor.device() == *first;
  }
  return py::make_tuple(blocks, inference, one_device);
}

// plan_records(cls, fields, names, tensors, decisions, aliases, special, common_of,
// special_record, measure, plain_types) -> (records, measured): the report's rows of a plan
// (plan.py's Plan.report), an instance of `cls` (ParamInit, a class with __slots__ named
// `fields`) per row, made without its __init__ by setting its slots:
//   a row k in `special` (the weight of a parametrization) is special_record(k);
//   any other row's fields are common_of(j) -> (values, measured), the values of `fields`
//     asked once per decision (a tuple the rows deciding alike share) of its first row j,
//     with "name" names[k], "aliases" aliases[k] where it has them, and, where `measured`,
//     "own_std" measure(tensors[k]) (left None without a call for a plain tensor on meta,
//     which measure gives None for); where `measure` is None, no row is measured and no
//     tensor is read;
//   measured: the rows whose own_std is not None.
// A record with slots takes a fifth of the memory of one with a __dict__, which a model of
// 10^5 parameters would otherwise take from the system on every report.
inline py::tuple plan_records(py::handle cls, py::tuple fields, py::list names, py::list tensors, py::list decisions,
                              py::dict aliases, py::dict special, py::handle common_of, py::handle special_record,
                              py::handle measure, py::tuple plain_types) {
  if (!PyType_Check(cls.ptr())) throw py::type_error("nspl_filler: plan_records needs a class");
  auto* type = reinterpret_cast<PyTypeObject*>(cls.ptr());
  const Py_ssize_t count = PyList_GET_SIZE(names.ptr());
  if (PyList_GET_SIZE(tensors.ptr()) != count || PyList_GET_SIZE(decisions.ptr()) != count) {
    throw py::value_error("nspl_filler: plan_records needs columns of one length");
  }
  // Where each field's slot lies in an instance: its member descriptor's offset.
  const Py_ssize_t field_count = static_cast<Py_ssize_t>(fields.size());
  std::vector<Py_ssize_t> offsets;
  Py_ssize_t name_field = -1, aliases_field = -1, own_field = -1;
  for (Py_ssize_t f = 0; f < field_count; ++f) {
    PyObject* field = PyTuple_GET_ITEM(fields.ptr(), f);
    PyObject* descriptor = PyDict_GetItemWithError(type->tp_dict, field);  // borrowed
    if (descriptor == nullptr || !Py_IS_TYPE(descriptor, &PyMemberDescr_Type)) {
      if (PyErr_Occurred()) throw py::error_already_set();
      throw py::type_error("nspl_filler: plan_records needs a class whose fields are slots");
    }
    const PyMemberDef* member = reinterpret_cast<PyMemberDescrObject*>(descriptor)->d_member;
    if (member->type != T_OBJECT_EX) throw py::type_error("nspl_filler: plan_records needs object slots");
    offsets.push_back(member->offset);
    if (walk::text_equals(field, "name")) name_field = f;
    if (walk::text_equals(field, "aliases")) aliases_field = f;
    if (walk::text_equals(field, "own_std")) own_field = f;
  }
  if (name_field < 0 || aliases_field < 0 || own_field < 0) {
    throw py::type_error("nspl_filler: plan_records needs the fields name, aliases and own_std");
  }
  const std::vector<PyObject*> plain_list = walk::type_list(plain_types);
  const py::str own_key = walk::interned("own_std");
  struct Common {
    py::tuple values;
    bool measured;
    bool atomic;  // whether every shared value is (walk::atomic)
  };
  std::unordered_map<PyObject*, Common> commons;  // decision -> what its rows share
  py::list records(count), measured;
  std::vector<PyObject*> values(static_cast<size_t>(field_count));  // borrowed, one row's
  // Each row reads its name and, to tell a meta tensor, its tensor and that tensor's
  // TensorImpl, cache misses in a report past the caches: asked for ahead, the tensor 2 * kAhead
  // rows ahead, the rest kAhead rows ahead.
  constexpr Py_ssize_t kAhead = 8;
  const bool measuring = !measure.is_none();
  for (Py_ssize_t k = 0; k < count; ++k) {
    if (count > 4096) {
      if (measuring && k + 2 * kAhead < count) __builtin_prefetch(PyList_GET_ITEM(tensors.ptr(), k + 2 * kAhead));
      if (k + kAhead < count) {
        __builtin_prefetch(PyList_GET_ITEM(names.ptr(), k + kAhead));
        PyObject* ahead = PyList_GET_ITEM(tensors.ptr(), k + kAhead);
        if (measuring && walk::of_type_in(ahead, plain_list)) {
          // is_meta() reads the device, near the end of a TensorImpl.
          const char* impl = reinterpret_cast<const char*>(THPVariable_Unpack(ahead).unsafeGetTensorImpl());
          __builtin_prefetch(impl + sizeof(c10::TensorImpl) - 16);
        }
      }
    }
    py::object index = py::reinterpret_steal<py::object>(PyLong_FromSsize_t(k));
    if (!index) throw py::error_already_set();
    const int is_special = PyDict_GET_SIZE(special.ptr()) > 0 ? PyDict_Contains(special.ptr(), index.ptr()) : 0;
    if (is_special < 0) throw py::error_already_set();
    if (is_special) {
      py::object record = special_record(index);
      if (!py::getattr(record, own_key).is_none()) measured.append(index);
      PyList_SET_ITEM(records.ptr(), k, record.release().ptr());
      continue;
    }
    PyObject* decision = PyList_GET_ITEM(decisions.ptr(), k);
    auto found = commons.find(decision);
    if (found == commons.end()) {
      py::tuple shared = common_of(index);
      if (shared.size() != 2 || !PyTuple_Check(shared[0].ptr()) ||
          PyTuple_GET_SIZE(shared[0].ptr()) != field_count) {
        throw py::type_error("nspl_filler: common_of must give (a value per field, bool)");
      }
      bool atomic = true;
      for (py::handle value : py::reinterpret_borrow<py::tuple>(shared[0])) atomic = atomic && walk::atomic(value.ptr());
      found = commons.emplace(decision, Common{py::reinterpret_borrow<py::tuple>(shared[0]), shared[1].cast<bool>(),
                                               atomic})
                  .first;
    }
    for (Py_ssize_t f = 0; f < field_count; ++f) values[f] = PyTuple_GET_ITEM(found->second.values.ptr(), f);
    values[name_field] = PyList_GET_ITEM(names.ptr(), k);
    if (PyDict_GET_SIZE(aliases.ptr()) > 0) {
      PyObject* own = PyDict_GetItemWithError(aliases.ptr(), index.ptr());  // borrowed
      if (own == nullptr && PyErr_Occurred()) throw py::error_already_set();
      if (own != nullptr) values[aliases_field] = own;
    }
    py::object std;  // holds a measured own_std while the record takes it
    if (measuring && found->second.measured) {
      PyObject* tensor = PyList_GET_ITEM(tensors.ptr(), k);
      if (!walk::of_type_in(tensor, plain_list) || !THPVariable_Unpack(tensor).is_meta()) {
        std = measure(py::handle(tensor));
        if (!std.is_none()) {
          values[own_field] = std.ptr();
          measured.append(index);
        }
      }
    }
    PyObject* record = type->tp_alloc(type, 0);
    if (record == nullptr) throw py::error_already_set();
    for (Py_ssize_t f = 0; f < field_count; ++f) {
      Py_INCREF(values[f]);
      *reinterpret_cast<PyObject**>(reinterpret_cast<char*>(record) + offsets[f]) = values[f];
    }
    // A record of atomic values is in no reference cycle (it is frozen): the collector, which
    // would otherwise scan every record of a report again at its next pass, leaves it alone.
    if (found->second.atomic && walk::atomic(values[name_field]) && walk::atomic(values[aliases_field]) &&
        walk::atomic(values[own_field])) {
      PyObject_GC_UnTrack(record);
    }
    PyList_SET_ITEM(records.ptr(), k, record);
  }
  return py::make_tuple(records, measured);
}

}  // namespace nspl
