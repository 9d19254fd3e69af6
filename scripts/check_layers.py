#!/usr/bin/env python3
"""Check that each layer of src/ uses only the layers below it.

Usage: check_layers.py BUILD_DIR [SRC_DIR]

Two checks, both from what the compiler produced or read, not from conventions:
- link level: every object file of libcogent is in the layer of its source folder
  (src/<layer>/x.cpp -> <layer>_x.cpp.o); a symbol it references but does not define must
  not be defined (strongly: T, D, B, R) by an object file of a higher layer;
- include level: a file in src/<layer>/ must not include a header of a higher layer
  ("<layer>/x.hpp"), only src/loop/ may include <ev.h>, and src/tls/ (libcogent_tls, a
  library of its own) includes only services/shim_api.hpp of the other layers.
Prints each violation and exits 1 if there is any. The layer order is read from
src/meson.build's `cogent_layers`.
"""
import glob
import os
import re
import subprocess
import sys


def layers_from_meson(src):
    text = open(os.path.join(src, 'meson.build')).read()
    m = re.search(r"cogent_layers\s*=\s*\[([^\]]*)\]", text)
    if not m:
        sys.exit('check_layers: cogent_layers not found in src/meson.build')
    return re.findall(r"'([a-z_]+)'", m.group(1))


def nm(obj, *flags):
    out = subprocess.run(['nm', *flags, obj], check=True, capture_output=True, text=True).stdout
    return out.splitlines()


def demangle(names):
    if not names:
        return {}
    out = subprocess.run(['c++filt'], input='\n'.join(names), capture_output=True,
                         text=True, check=True).stdout.splitlines()
    return dict(zip(names, out))


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    build = sys.argv[1]
    src = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), '..', 'src')
    order = layers_from_meson(src)
    rank = {name: i for i, name in enumerate(order)}
    objs = glob.glob(os.path.join(build, 'src', 'libcogent.so*.p', '*.o'))
    # tls (src/tls/) is a library of its own (libcogent_tls, built when OpenSSL is found).
    objs += glob.glob(os.path.join(build, 'src', 'libcogent_tls.so*.p', '*.o'))
    if not objs:
        sys.exit(f'check_layers: no object files under {build}/src (build the library first)')
    bad = []
    defined = {}  # symbol -> (layer, object)
    undefined = {}  # object -> [symbols]
    layer_of = {}
    for obj in objs:
        base = os.path.basename(obj)
        layer = base.split('_', 1)[0]
        if layer not in rank:
            bad.append(f'{base}: not in a layer folder (src/<layer>/): layers are {", ".join(order)}')
            continue
        layer_of[obj] = layer
        for line in nm(obj, '--defined-only'):
            parts = line.split()
            if len(parts) == 3 and parts[1] in 'TDBR':
                defined[parts[2]] = (layer, base)
        undefined[obj] = [line.split()[-1] for line in nm(obj, '--undefined-only')]
    edges = []
    for obj, syms in undefined.items():
        lo = layer_of[obj]
        for s in syms:
            if s in defined:
                hl, hobj = defined[s]
                if rank[hl] > rank[lo]:
                    edges.append((os.path.basename(obj), lo, s, hobj, hl))
    names = demangle(sorted({e[2] for e in edges}))
    for obj, lo, s, hobj, hl in sorted(edges):
        bad.append(f'{obj} ({lo}) uses {names.get(s, s)} from {hobj} ({hl}), a higher layer')
    # include level
    inc_re = re.compile(r'^\s*#\s*include\s*[<"]([^">]+)[">]', re.M)
    for path in sorted(glob.glob(os.path.join(src, '*', '*.[ch]pp'))):
        layer = os.path.basename(os.path.dirname(path))
        if layer not in rank:
            continue
        for inc in inc_re.findall(open(path).read()):
            if inc == 'ev.h' and layer != 'loop':
                bad.append(f'{os.path.relpath(path, src)}: includes <ev.h> (only src/loop/ may)')
            top = inc.split('/', 1)[0]
            # A separate library sees none of libcogent's hidden internals: src/tls/ reaches
            # the runtime through services/shim_api.hpp only, as patch/ does.
            if layer == 'tls' and top in rank and top != 'tls' and inc != 'services/shim_api.hpp':
                bad.append(f'{os.path.relpath(path, src)}: includes {inc} (src/tls/ may include '
                           'only services/shim_api.hpp of the other layers)')
            if '/' in inc and top in rank and rank[top] > rank[layer]:
                bad.append(f'{os.path.relpath(path, src)} ({layer}) includes {inc}, a higher layer')
    for b in bad:
        print('check_layers:', b)
    print(f'check_layers: {len(objs)} object files in {len(order)} layers, {len(bad)} violations')
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
