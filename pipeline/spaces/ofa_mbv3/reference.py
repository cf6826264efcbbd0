"""HELP's 10 hardware-embedding reference architectures of the OFA MobileNetV3 space.

HELP describes a device by the latencies of these 10 subnets on it (their positions 1316, 1587,
1621, 1636, 1980, 2329, 2487, 3355, 3740, 4948 in HELP's list of 5,000 OFA subnets, file
``data/ofa/hardware_embedding_index.pt`` of https://github.com/HayeonLee/HELP at commit
45f70eb92d0d735970a33b608d1544ad3c52f285), written as this space's canonical strings.

Please cite: Hayeon Lee, Sewoong Lee, Song Chong, Sung Ju Hwang. *HELP: Hardware-Adaptive
Efficient Latency Prediction for NAS via Meta-Learning.* NeurIPS 2021. arXiv:2106.08630.

The source data is released under the MIT licence by its authors; its notice applies to
these strings:

    MIT License

    Copyright (c) 2024 HayeonLee

    Permission is hereby granted, free of charge, to any person obtaining a copy
    of this software and associated documentation files (the "Software"), to deal
    in the Software without restriction, including without limitation the rights
    to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
    copies of the Software, and to permit persons to whom the Software is
    furnished to do so, subject to the following conditions:

    The above copyright notice and this permission notice shall be included in all
    copies or substantial portions of the Software.

    THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
    IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
    FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
    AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
    LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
    OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
    SOFTWARE.
"""

from __future__ import annotations

#: Positions in HELP's list of 5,000 subnets (``idx`` of ../shared/data/ofa/archs.csv).
HELP_REFERENCE_INDICES: tuple[int, ...] = (
    1316, 1587, 1621, 1636, 1980, 2329, 2487, 3355, 3740, 4948,
)  # fmt: skip

#: The same subnets as canonical strings, in that order.
HELP_REFERENCE_ARCHS: tuple[str, ...] = (
    "r196|d4,3,3,4,2|k7,7,5,5,7,7,3,7,7,5,3,5,3,3,3,5|e3,6,3,6,6,4,3,4,6,6,3,4,4,3,3,3",
    "r172|d3,2,2,3,2|k7,3,3,5,3,5,7,3,7,5,3,5|e4,3,6,6,6,3,6,6,3,3,6,3",
    "r204|d2,2,2,2,3|k7,5,3,3,7,7,5,5,7,7,7|e4,4,4,4,6,3,3,6,3,6,4",
    "r200|d4,3,4,4,4|k3,7,5,7,3,3,5,3,3,5,3,7,5,3,7,7,5,5,3|e4,3,3,6,3,3,4,6,6,4,6,3,6,6,6,4,4,4,6",
    "r136|d2,2,2,3,2|k5,7,7,7,7,3,7,7,7,7,7|e4,6,4,6,4,3,6,4,4,4,6",
    "r224|d4,2,3,4,4|k7,7,5,7,3,7,3,7,7,3,3,7,7,3,5,7,7|e6,4,3,6,6,6,6,4,6,6,6,4,3,4,6,6,3",
    "r132|d4,2,4,2,3|k5,5,7,3,3,3,7,3,3,5,7,3,3,3,3|e6,3,4,4,3,3,3,3,4,4,3,3,3,6,6",
    "r152|d2,4,2,4,4|k7,3,3,7,5,7,7,3,3,3,3,7,7,7,3,7|e3,6,6,4,3,4,6,4,6,3,4,3,4,3,3,6",
    "r152|d2,4,3,4,4|k7,3,3,7,3,5,5,5,5,5,5,3,5,5,5,3,7|e4,4,6,3,6,4,4,4,4,3,4,6,4,6,3,3,3",
    "r200|d4,4,3,4,2|k3,3,7,7,7,7,7,7,5,7,3,3,5,5,3,3,7|e3,3,4,6,6,6,4,3,6,3,3,3,3,6,3,6,6",
)
