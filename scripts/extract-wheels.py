#!/usr/bin/env python3
"""Extracts wheels side by side into one folder, keeping file modes (the set-up scripts'
shared step: fetch-libtorch.sh, fetch-cuda.sh).

usage: extract-wheels.py DEST WHEEL...

Everything is extracted into DEST.partial first; then each top-level entry replaces its
previous extraction in DEST in one step, so an interrupted run never leaves a half-written
folder behind.
"""
import os
import shutil
import sys
import zipfile

dest, wheels = sys.argv[1], sys.argv[2:]
tmp = dest + ".partial"
shutil.rmtree(tmp, ignore_errors=True)
os.makedirs(tmp)
for wheel in wheels:
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            path = z.extract(info, tmp)
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(path, mode)
os.makedirs(dest, exist_ok=True)
for name in os.listdir(tmp):
    target = os.path.join(dest, name)
    if os.path.isdir(target):
        shutil.rmtree(target)
    elif os.path.exists(target):
        os.remove(target)
    os.replace(os.path.join(tmp, name), target)
shutil.rmtree(tmp)
