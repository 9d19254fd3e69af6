# cogent-gdb.py: gdb commands that show every greenlet of a cogent program, parked ones included,
# on a live process or in a core file.
#
#   info greenlets         every hub (its OS thread), then each of its greenlets: a number, the
#                          name, the state, what it waits on, its stack and, for a parked one, the
#                          innermost frame in the program's own code
#   greenlet bt N|all [full]
#                          the backtrace of greenlet N (as numbered by `info greenlets`, or its
#                          address), without resuming it
#
# The build copies this file beside libcogent as libcogent.so.VERSION-gdb.py, the name gdb
# auto-loads for the library (subject to `set auto-load safe-path`); `source` it otherwise.
# It reads the runtime's structures by name through libcogent's debug info (a debug or
# debugoptimized build); the one layout it knows by heart is the x86-64 saved context of
# src/core/switch_x86_64.S. A parked greenlet's backtrace comes from an unwinder that, while that
# greenlet is selected, gives the innermost frame of its thread the registers saved in the
# greenlet's context: nothing is written to the process, so a core file works too.
#
# Loading it twice replaces the commands and the unwinder (same names); nothing is registered
# twice.

import re
import struct

import gdb
import gdb.unwinder

# src/core/switch_x86_64.S: a suspended context is a stack pointer; there, in this order, the
# callee-saved registers and the return address. The resumed side's rsp is ctx + 0x38.
_CTX_REGS = ("r12", "r13", "r14", "r15", "rbx", "rbp", "rip")
_CTX_SIZE = 8 * len(_CTX_REGS)

_NS = "cogent::detail::"
_HUBS_NAMES = (_NS + "(anonymous namespace)::g_hubs", "(anonymous namespace)::g_hubs")
_MAX_LIST = 10_000_000  # a corrupt list never loops forever
_WHERE_DEPTH = 48  # frames looked at for the innermost frame in user code


class CogentError(Exception):
    """A message for the user, printed as is."""


class StackMissing(CogentError):
    """A parked greenlet's saved context reads as zeros: its stack is not in the core file."""

    NOTE = ("cogent: a greenlet's saved context reads as zeros: its stack is not in this core "
            "file. gdb's gcore stops copying a mapping at the first guard page installed with "
            "MADV_GUARD_INSTALL (Linux >= 6.13), so a gcore loses the greenlet stacks; the "
            "kernel's own core dump keeps them, and so does gcore of a process run with "
            "COGENT_STACK_GUARD=mprotect.")


# --- reading the runtime's structures ---------------------------------------------------------


def _base_offset(t, base_name):
    """Offset in bytes of base class base_name within class type t (searched through the base
    classes, depth first), or None."""
    t = t.strip_typedefs()
    if t.code != gdb.TYPE_CODE_STRUCT:
        return None
    for f in t.fields():
        if not f.is_base_class:
            continue
        if f.type.strip_typedefs().name == base_name:
            return f.bitpos // 8
        inner = _base_offset(f.type, base_name)
        if inner is not None:
            return f.bitpos // 8 + inner
    return None


_field_cache = {}


def _field_offset(t, name):
    """(offset in bytes, type) of data member `name` of class type t or of one of its bases."""
    t = t.strip_typedefs()
    key = (t.name, name)
    if key in _field_cache:
        return _field_cache[key]
    found = None
    for f in t.fields():
        if f.is_base_class:
            r = _field_offset(f.type, name)
            if r is not None:
                found = (f.bitpos // 8 + r[0], r[1])
                break
        elif f.name == name:
            found = (f.bitpos // 8, f.type)
            break
    if t.name is not None:
        _field_cache[key] = found
    return found


def _member(ptr, name):
    """Member `name` of the object ptr points at, read through the pointer's static type.
    (value[name] on a polymorphic object makes gdb look up its dynamic type, which warns for
    classes it cannot name, such as a SpawnState instantiated with a lambda.)"""
    r = _field_offset(ptr.type.target(), name)
    if r is None:
        raise CogentError("cogent: %s has no member %s (another cogent version?)"
                          % (ptr.type.target(), name))
    off, ftype = r
    return gdb.Value(int(ptr) + off).cast(ftype.pointer()).dereference()


def _downcast(ptr, base_name, derived_ptr_type):
    """ptr points at the base_name subobject of an object of type *derived_ptr_type: a pointer
    to the whole object."""
    off = _base_offset(derived_ptr_type.target(), base_name)
    if off is None:
        raise CogentError("cogent: %s has no base %s" % (derived_ptr_type.target(), base_name))
    return gdb.Value(int(ptr) - off).cast(derived_ptr_type)


def _list_nodes(lst):
    """The node pointers (ListNode*) of a cogent::detail::List, head to tail."""
    head = lst["head_"]
    head_addr = int(head.address)
    p = head["next"]
    n = 0
    while int(p) != head_addr:
        if int(p) == 0 or n >= _MAX_LIST:
            raise CogentError("cogent: a list at 0x%x is corrupt" % head_addr)
        yield p
        p = p.dereference()["next"]
        n += 1


def _vector_items(v):
    """The elements of a libstdc++ std::vector."""
    impl = v["_M_impl"]
    start, finish = impl["_M_start"], impl["_M_finish"]
    count = (int(finish) - int(start)) // start.type.target().sizeof
    if count < 0 or count > _MAX_LIST:
        raise CogentError("cogent: the hub registry looks corrupt (%d entries)" % count)
    return [(start + i).dereference() for i in range(count)]


def _first_pointer(v):
    """The first pointer inside v, a smart pointer (std::unique_ptr holds just one)."""
    t = v.type.strip_typedefs()
    if t.code == gdb.TYPE_CODE_PTR:
        return v
    if t.code == gdb.TYPE_CODE_STRUCT:
        for f in t.fields():
            try:
                p = _first_pointer(v[f])
            except gdb.error:
                continue
            if p is not None:
                return p
    return None


def _std_string(v):
    try:
        data = v["_M_dataplus"]["_M_p"]
        n = int(v["_M_string_length"])
        return data.string(length=min(n, 200))
    except gdb.error:
        return str(v)


def _c_string(p):
    if int(p) == 0:
        return None
    try:
        return p.string()
    except gdb.error:
        return "<unreadable 0x%x>" % int(p)


def _registry():
    """The value of the hub registry (g_hubs), or a CogentError saying why it cannot be had."""
    for name in _HUBS_NAMES:
        try:
            sym = gdb.lookup_static_symbol(name)
        except gdb.error:
            sym = None
        if sym is not None:
            return sym.value()
        try:
            return gdb.parse_and_eval("'%s'" % name)
        except gdb.error:
            pass
    if any("libcogent" in (o.filename or "") for o in gdb.objfiles()) or gdb.lookup_global_symbol(
        "cogent::detail::tls_core"
    ) is not None or _has_minimal_symbol("cogent_switch_context"):
        raise CogentError(
            "cogent: libcogent is loaded but its greenlet registry (g_hubs) cannot be read: it has "
            "no debug info. Build libcogent with debug info (meson buildtype debug or "
            "debugoptimized) to see its greenlets."
        )
    raise CogentError("cogent: no cogent runtime in this program (libcogent is not loaded yet?)")


def _has_minimal_symbol(name):
    try:
        return gdb.execute("info symbol %s" % name, to_string=True).find("No symbol") < 0
    except gdb.error:
        return False


def _threads_by_lwp():
    inf = gdb.selected_inferior()
    if inf is None or inf.pid == 0:
        raise CogentError("cogent: no process (run the program, attach to it or load a core file)")
    return {t.ptid[1]: t for t in inf.threads()}


def _enum_name(v):
    return str(v).rsplit("::", 1)[-1]


class Greenlet:
    """One greenlet as found in the process."""

    def __init__(self, num, hub, ptr, role):
        self.num = num
        self.hub = hub
        self.ptr = ptr  # cogent::detail::GreenletImpl*
        self.addr = int(ptr)
        self.state = _enum_name(_member(ptr, "state"))  # unstarted, active, dead
        if self.state == "active":
            self.state = "running" if self.addr == hub.current else "parked"
        self.waiting_on = _c_string(_member(ptr, "waiting_on"))
        self.stack_lo = int(_member(ptr, "stack_lo"))
        self.stack_size = int(_member(ptr, "stack_size"))
        self.ctx = int(_member(ptr, "ctx"))
        self.name = role or self._name()
        self.kind = role

    def _name(self):
        """The name the runtime would print (GreenletState::describe), best effort."""
        cls = _vtable_class(self.ptr)
        if cls is not None and cls.endswith("::RawImpl"):
            return "<raw greenlet>"
        # Anything else in a thread's list of live greenlets (or queued to start) is a spawned
        # greenlet: its GreenletState part sits where its GreenletImpl part says (GreenletState
        # is the only class deriving from GreenletImpl there). Its name if it was given one,
        # else Greenlet-<its id>. (Not value.dynamic_type: gdb cannot look up the RTTI of a
        # SpawnState instantiated with a lambda, and warns.)
        gs = _lookup_type(_NS + "GreenletState")
        gi_name = self.ptr.type.target().strip_typedefs().name
        off = _base_offset(gs, gi_name) if gs is not None else None
        if off is not None:
            st = gdb.Value(self.addr - off).cast(gs.pointer())
            p = _first_pointer(_member(st, "name_"))
            if p is not None and int(p) != 0:
                return _std_string(p.dereference())
            return "Greenlet-%d" % int(_member(st, "id_"))
        return "<greenlet 0x%x>" % self.addr

    def stack_text(self):
        if not self.stack_lo:
            return "thread stack" if self.kind == "<main>" else "-"
        hi = self.stack_lo + self.stack_size
        text = "0x%x-0x%x %s" % (self.stack_lo, hi, _size(self.stack_size))
        if self.state == "parked" and self.stack_lo <= self.ctx < hi:
            text += ", %s used" % _size(hi - self.ctx)
        return text

    def has_saved_context(self):
        return self.state == "parked" and self.ctx != 0


def _vtable_class(ptr):
    """The class whose vtable the polymorphic object at ptr points at, from the vtable's symbol."""
    try:
        field = next(f.name for f in ptr.type.target().strip_typedefs().fields()
                     if f.name and f.name.startswith("_vptr"))
        text = gdb.execute("info symbol 0x%x" % int(_member(ptr, field)), to_string=True)
    except (gdb.error, StopIteration):
        return None
    m = re.match(r"vtable for (.*?)(?: \+ \d+)? in section", text)
    return m.group(1) if m else None


def _size(n):
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return "%d MiB" % (n >> 20)
    if n >= 1 << 10:
        return ("%d KiB" % (n >> 10)) if n % 1024 == 0 else ("%.1f KiB" % (n / 1024))
    return "%d B" % n


class Hub:
    """One hub (HubImpl) and its OS thread."""

    def __init__(self, ptr, threads):
        self.index = 0
        self.ptr = ptr
        self.addr = int(ptr)
        h = ptr.dereference()
        self.lwp = int(h["tid"])
        self.thread = threads.get(self.lwp)
        self.ts = h["ts"]
        ts = self.ts.dereference()
        self.current = int(ts["current"])
        self.greenlets = []

    def thread_text(self):
        if self.thread is None:
            return "LWP %d (no such thread in gdb)" % self.lwp
        return "thread %d (LWP %d)" % (self.thread.num, self.lwp)


def _collect():
    """Every hub (in the order of gdb's thread numbers) and its greenlets, numbered from 1 in
    the order printed."""
    threads = _threads_by_lwp()
    hubs = [Hub(hp, threads) for hp in _vector_items(_registry())]
    hubs.sort(key=lambda h: h.thread.num if h.thread is not None else 1 << 30)
    num = 0
    for i, hub in enumerate(hubs):
        hub.index = i + 1
        ts = hub.ts.dereference()
        h = hub.ptr.dereference()
        gi_ptr = ts["current"].type  # GreenletImpl*
        seen = set()

        def add(ptr, role=None):
            nonlocal num
            if int(ptr) == 0 or int(ptr) in seen:
                return
            seen.add(int(ptr))
            num += 1
            try:
                hub.greenlets.append(Greenlet(num, hub, ptr.cast(gi_ptr), role))
            except (gdb.error, gdb.MemoryError) as e:
                print("cogent: greenlet 0x%x unreadable: %s" % (int(ptr), e))

        add(h["greenlet"], "<hub>")
        add(ts["main"], "<main>")
        for node in _list_nodes(ts["live"]):
            add(_downcast(node, _NS + "ListNode", gi_ptr))
        # Spawned greenlets not started yet wait in the hub's queue as their start callback.
        fire = _wake_fire_address()
        if fire is not None:
            wc_ptr = _wake_callback_ptr_type()
            for node in _list_nodes(h["callbacks"]) if wc_ptr is not None else ():
                wc = _downcast(node, _NS + "ListNode", wc_ptr)
                if int(_member(wc, "fn")) == fire:
                    add(_member(wc, "g"))
    return hubs


def _lookup_type(name):
    try:
        return gdb.lookup_type(name).strip_typedefs()
    except gdb.error:
        return None


def _wake_callback_ptr_type():
    t = _lookup_type(_NS + "WakeCallback")
    return t.pointer() if t is not None else None


def _wake_fire_address():
    try:
        sym = gdb.lookup_global_symbol(_NS + "WakeCallback::fire")
        if sym is None:
            sym = gdb.lookup_symbol(_NS + "WakeCallback::fire")[0]
        if sym is None:
            return None
        return int(sym.value().address)
    except gdb.error:
        return None


# --- selecting a parked greenlet: the unwinder ------------------------------------------------


class _Selection:
    def __init__(self, greenlet, thread, regs, real_sp, real_pc):
        self.greenlet = greenlet
        self.ptid = thread.ptid
        self.regs = regs  # register name -> int, as the greenlet will resume
        self.real_sp = real_sp  # the thread's own innermost sp and pc
        self.real_pc = real_pc


class GreenletUnwinder(gdb.unwinder.Unwinder):
    """While a greenlet is selected, the innermost (non-inline) frame of its thread unwinds to
    the greenlet's saved context: the frames above it are the greenlet's."""

    def __init__(self):
        super().__init__("cogent-greenlets")
        self.selection = None

    def __call__(self, pending_frame):
        sel = self.selection
        if sel is None:
            return None
        try:
            if gdb.selected_thread() is None or gdb.selected_thread().ptid != sel.ptid:
                return None
            sp = int(pending_frame.read_register("rsp"))
            pc = int(pending_frame.read_register("rip"))
        except (gdb.error, ValueError):
            return None
        # Only the thread's innermost real frame (inline frames share its registers).
        if sp != sel.real_sp or pc != sel.real_pc:
            return None
        sp_type = pending_frame.read_register("rsp").type
        pc_type = pending_frame.read_register("rip").type
        info = pending_frame.create_unwind_info(_FrameId(sel.greenlet.ctx, pc))
        for name, value in sel.regs.items():
            t = pc_type if name == "rip" else sp_type
            info.add_saved_register(name, gdb.Value(value).cast(t))
        return info


class _FrameId:
    def __init__(self, sp, pc):
        self.sp = gdb.Value(sp)
        self.pc = gdb.Value(pc)


def _unwinder():
    u = getattr(gdb, "_cogent_greenlet_unwinder", None)
    if u is None:
        u = GreenletUnwinder()
        gdb._cogent_greenlet_unwinder = u  # survives a second load of this script
    return u


class _Selected:
    """Context manager: greenlet g's frames are its thread's, from the innermost frame out."""

    def __init__(self, g):
        self.g = g

    def __enter__(self):
        g = self.g
        if g.hub.thread is None:
            raise CogentError("cogent: the thread of greenlet %d (LWP %d) is not known to gdb"
                              % (g.num, g.hub.lwp))
        self.prev_thread = gdb.selected_thread()
        try:
            self.prev_frame = gdb.selected_frame()
        except gdb.error:
            self.prev_frame = None
        g.hub.thread.switch()
        real = gdb.newest_frame()
        while real.type() == gdb.INLINE_FRAME and real.older() is not None:
            real = real.older()
        real_sp = int(real.read_register("rsp"))
        real_pc = int(real.read_register("rip"))
        raw = bytes(gdb.selected_inferior().read_memory(g.ctx, _CTX_SIZE))
        vals = struct.unpack("<%dQ" % len(_CTX_REGS), raw)
        regs = dict(zip(_CTX_REGS, vals))
        if regs["rip"] == 0:
            if self.prev_thread is not None and self.prev_thread.is_valid():
                self.prev_thread.switch()
            raise StackMissing(StackMissing.NOTE)
        regs["rsp"] = g.ctx + _CTX_SIZE
        _unwinder().selection = _Selection(g, g.hub.thread, regs, real_sp, real_pc)
        gdb.invalidate_cached_frames()
        # The frames of the thread itself, up to the one the unwinder took over.
        self.skip = 0
        f = gdb.newest_frame()
        while f is not None and not (f.type() == gdb.NORMAL_FRAME and f.pc() == real_pc
                                     and _frame_sp(f) == real_sp):
            f = f.older()
            self.skip += 1
        if f is None:
            self.skip = 0
        else:
            self.skip += 1
        return self

    def frames(self):
        """The greenlet's frames, innermost first."""
        f = gdb.newest_frame()
        for _ in range(self.skip):
            f = f.older() if f is not None else None
        while f is not None:
            yield f
            f = f.older()

    def __exit__(self, *exc):
        _unwinder().selection = None
        gdb.invalidate_cached_frames()
        try:
            if self.prev_thread is not None and self.prev_thread.is_valid():
                self.prev_thread.switch()
            if self.prev_frame is not None and self.prev_frame.is_valid():
                self.prev_frame.select()
        except gdb.error:
            pass
        return False


def _frame_sp(f):
    try:
        return int(f.read_register("rsp"))
    except gdb.error:
        return None


# --- where a greenlet is ----------------------------------------------------------------------

_INTERNAL_PREFIXES = ("cogent::", "cogent_", "std::", "__gnu_cxx::", "__")


def _is_internal(f):
    """A frame of the runtime (libcogent, cogent's and the standard library's templates)."""
    name = f.name()
    if name is None:
        return True
    if name.startswith(_INTERNAL_PREFIXES):
        return True
    lib = gdb.solib_name(f.pc())
    return lib is not None and "libcogent" in lib.rsplit("/", 1)[-1]


def _describe_frame(f):
    name = f.name() or "0x%x" % f.pc()
    sal = f.find_sal()
    if sal is not None and sal.symtab is not None:
        return "%s at %s:%d" % (name, sal.symtab.filename, sal.line)
    lib = gdb.solib_name(f.pc())
    return "%s from %s" % (name, lib) if lib else name


def _where(g):
    """The innermost frame of greenlet g in user code; failing that (the hub), the innermost
    function that is not inlined (the switch is)."""
    with _Selected(g) as sel:
        fallback = None
        for i, f in enumerate(sel.frames()):
            if i >= _WHERE_DEPTH:
                break
            if fallback is None and f.type() == gdb.NORMAL_FRAME:
                fallback = f
            if not _is_internal(f):
                return _describe_frame(f)
        return _describe_frame(fallback) if fallback is not None else "?"


# --- commands ---------------------------------------------------------------------------------


def _table(rows, header):
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header) - 1)]
    out = []
    for r in [header] + rows:
        cells = [r[i].ljust(widths[i]) for i in range(len(widths))] + [r[-1]]
        out.append("  " + "  ".join(cells).rstrip())
    return "\n".join(out)


def _info_greenlets():
    hubs = _collect()
    if not hubs:
        print("cogent: no hub yet (no thread has used cogent)")
        return
    missing = False
    for hub in hubs:
        print("Hub %d (0x%x) on %s: %d greenlets"
              % (hub.index, hub.addr, hub.thread_text(), len(hub.greenlets)))
        rows = []
        for g in hub.greenlets:
            if g.state == "running":
                where = "running: its frames are the thread's (thread %s, bt)" % (
                    hub.thread.num if hub.thread else "?")
            elif g.has_saved_context():
                try:
                    where = _where(g)
                except StackMissing:
                    where = "<stack not in the core file>"
                    missing = True
                except (gdb.error, gdb.MemoryError, CogentError) as e:
                    where = "<cannot unwind: %s>" % e
            else:
                where = "-"
            rows.append([str(g.num), g.name, g.state, g.waiting_on or "-", g.stack_text(),
                         where])
        print(_table(rows, ["Id", "Name", "State", "Waits on", "Stack", "Where"]))
    if missing:
        print(StackMissing.NOTE)


def _renumbered_bt(text, skip):
    """gdb's backtrace text without its first `skip` frames, renumbered from #0."""
    out = []
    keep = False
    for line in text.splitlines():
        m = re.match(r"#(\d+)(\s+)(.*)", line)
        if m:
            n = int(m.group(1))
            keep = n >= skip
            if keep:
                num = "#%d" % (n - skip)
                out.append(num + " " * max(1, len(m.group(0)) - len(m.group(3)) - len(num))
                           + m.group(3))
            continue
        if keep:
            out.append(line)
    return "\n".join(out)


def _print_bt(g, full):
    header = "Greenlet %d %s (%s%s) on %s" % (
        g.num, g.name, g.state, ", waiting on " + g.waiting_on if g.waiting_on else "",
        g.hub.thread_text())
    print(header + ":")
    cmd = "bt full" if full else "bt"
    if g.state == "running":
        if g.hub.thread is None:
            print("  (its thread is not known to gdb)")
            return
        prev = gdb.selected_thread()
        g.hub.thread.switch()
        try:
            print("  running: the backtrace of its thread")
            gdb.execute(cmd)
        finally:
            if prev is not None and prev.is_valid():
                prev.switch()
        return
    if not g.has_saved_context():
        print("  no frames (%s)" % g.state)
        return
    with _Selected(g) as sel:
        text = gdb.execute(cmd, to_string=True)
        skip = sel.skip
    print(_renumbered_bt(text, skip))


def _find(hubs, arg):
    all_g = [g for h in hubs for g in h.greenlets]
    try:
        n = int(arg, 0)
    except ValueError:
        raise CogentError("cogent: greenlet bt: expected N (see info greenlets), an address, "
                          "or all; got %r" % arg)
    for g in all_g:
        if g.num == n or g.addr == n:
            return g
    raise CogentError("cogent: no greenlet %s (see info greenlets)" % arg)


class InfoGreenlets(gdb.Command):
    """List every hub and its greenlets: number, name, state, wait, stack, innermost user frame.

Usage: info greenlets
The numbers are for `greenlet bt N` and hold while the program stays stopped."""

    def __init__(self):
        super().__init__("info greenlets", gdb.COMMAND_STATUS)

    def invoke(self, arg, from_tty):
        try:
            _info_greenlets()
        except CogentError as e:
            print(e)


class GreenletPrefix(gdb.Command):
    """Commands for cogent greenlets (see also `info greenlets`)."""

    def __init__(self):
        super().__init__("greenlet", gdb.COMMAND_STACK, prefix=True)


class GreenletBt(gdb.Command):
    """Backtrace of a greenlet, without resuming it.

Usage: greenlet bt N|ADDRESS|all [full]
N is a number from `info greenlets`. A running greenlet's backtrace is its thread's."""

    def __init__(self):
        super().__init__("greenlet bt", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        args = gdb.string_to_argv(arg)
        full = "full" in args
        args = [a for a in args if a != "full"]
        try:
            if len(args) != 1:
                raise CogentError("usage: greenlet bt N|ADDRESS|all [full]")
            hubs = _collect()
            if args[0] == "all":
                first = True
                for h in hubs:
                    for g in h.greenlets:
                        if not first:
                            print()
                        first = False
                        _print_bt(g, full)
            else:
                _print_bt(_find(hubs, args[0]), full)
        except CogentError as e:
            print(e)


def _register():
    InfoGreenlets()
    GreenletPrefix()
    GreenletBt()
    gdb.unwinder.register_unwinder(None, _unwinder(), replace=True)


_register()
