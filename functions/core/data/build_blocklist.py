#!/usr/bin/env python3
"""Builds common-passwords.bin, the password blocklist embedded in bedside-core.

Source: the ranked "passwords" frequency list shipped in the `zxcvbn` package on PyPI (MIT
licence). The first N entries are lower-cased, hashed with SHA-256, and the first four bytes of
each digest are stored as sorted, de-duplicated big-endian u32 values. The core looks a candidate
password up by the same fingerprint, so the list costs four bytes an entry.

Usage: pip install zxcvbn==4.5.0 && python3 build_blocklist.py [N]
"""
import hashlib
import struct
import sys
from pathlib import Path

from zxcvbn.frequency_lists import FREQUENCY_LISTS

count = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
words = FREQUENCY_LISTS["passwords"][:count]
prints = sorted({hashlib.sha256(w.lower().encode()).digest()[:4] for w in words})
out = Path(__file__).with_name("common-passwords.bin")
out.write_bytes(b"".join(prints))
print(f"{len(words)} passwords -> {len(prints)} fingerprints, {out.stat().st_size} bytes")
