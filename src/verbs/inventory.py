#!/usr/bin/python3
"""inventory.py: which installed programs and libraries import which libibverbs symbols.

Reads the Debian 12 binaries named in ABI.md with `objdump -T` and prints, for every
symbol Debian's libibverbs.so.1 exports, the objects that import it and the version they
import; then each object's DT_VERNEED IBVERBS nodes (`readelf -V`). Re-run after a package
upgrade and compare with ABI.md, section (a).
"""
import collections
import glob
import os
import re
import subprocess

LIB = '/usr/lib/x86_64-linux-gnu'
UTILS = ('ibv_devices ibv_devinfo ibv_rc_pingpong ibv_uc_pingpong ibv_ud_pingpong '
         'ibv_srq_pingpong ibv_xsrq_pingpong ibv_asyncwatch').split()
PERFTEST = [f'ib_{v}_{k}' for v in ('send', 'write', 'read', 'atomic') for k in ('bw', 'lat')]
PYVERBS = '/usr/lib/python3/dist-packages/pyverbs'


def targets():
    t = {b: '/usr/bin/' + b for b in UTILS + PERFTEST}
    t['librdmacm.so.1'] = LIB + '/librdmacm.so.1'
    for f in sorted(glob.glob(LIB + '/libibverbs/*.so')):
        t['prov:' + os.path.basename(f).replace('-rdmav34.so', '')] = f
    for f in sorted(glob.glob(PYVERBS + '/*.so') + glob.glob(PYVERBS + '/providers/*/*.so')):
        t['py:' + os.path.relpath(f, PYVERBS).split('.cpython')[0]] = f
    return t


def run(*cmd):
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def exports():
    out = {}
    for line in run('readelf', '--dyn-syms', '-W', LIB + '/libibverbs.so.1').splitlines():
        f = line.split()
        if len(f) >= 8 and f[6] != 'UND' and '@' in f[7]:
            name = f[7].split('@')[0]
            out.setdefault(name, []).append(f[7][len(name):])
    return out


def main():
    exp = exports()
    imp = collections.defaultdict(dict)
    need = {}
    for tag, path in targets().items():
        for line in run('objdump', '-T', path).splitlines():
            f = line.split()
            if '*UND*' in line and len(f) >= 2 and f[-2].startswith('(IBVERBS'):
                imp[f[-1]][tag] = f[-2].strip('()')
        vd = run('readelf', '-V', path).split('Version needs section')[-1]
        need[tag] = sorted(set(re.findall(r'Name: (IBVERBS_[\w.]+)', vd)))
    for name in sorted(exp):
        who = imp.get(name, {})
        print(f"{name} [{' '.join(exp[name])}]: " +
              (' '.join(f'{t}@{v}' for t, v in sorted(who.items())) or '-'))
    print()
    for tag, nodes in need.items():
        if nodes:
            print(f"{tag}: needs {' '.join(nodes)}")
    missing = [n for n in imp if n not in exp]
    if missing:
        print('imported but not exported by Debian:', ' '.join(missing))


if __name__ == '__main__':
    main()
