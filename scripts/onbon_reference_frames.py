#!/usr/bin/env python3
"""Onbon BX-6K reference frames from an independent encoder, for Tests/ProtocolTests/OnbonTests.swift.

The encoder is app-tools-zxw 2.2.4 from PyPI (module SDK_硬件读写/LED显示屏/仰邦BX6K1_网口_使用公共封装函数,
class LED通讯), a Chinese hardware SDK that drives BX-6K1 boards over TCP. Its CRC comes from crcmod, not from us.
Only the frame builders are called; nothing is sent anywhere.

    python3 -m venv /tmp/onbon-venv
    /tmp/onbon-venv/bin/pip install -r scripts/requirements-onbon.txt --no-deps
    /tmp/onbon-venv/bin/python scripts/onbon_reference_frames.py

(--no-deps: the package's other dependencies serve unrelated modules; this script needs only crcmod.)
"""
import importlib

module = importlib.import_module("app_tools_zxw.SDK_硬件读写.LED显示屏.仰邦BX6K1_网口_使用公共封装函数")
LED = module.LED通讯


def show(name, frame):
    print(f"{name}: " + " ".join(f"{b:02X}" for b in frame))


# 1. Red ASCII text, scrolling left, in the default area (id 4, 64 columns × 32 pixels).
show("text_red_scroll", LED._修改文字_生成命令("012345", color=0, speed=10, 显示方式=3, 特技停留时间=0, 动态区运行模式=0))

# 2. Green Chinese text, clear and delete all areas first, wrapped multi-line, in the package's area 1
#    (x 16 px, y 0, 48 px × 16 px, pixel units flagged by 0x80 in the high byte).
show("text_green_chinese", LED._修改文字_生成命令(
    "请A023号到5号窗口", color=1, speed=0, 显示方式=1, 特技停留时间=5, 动态区运行模式=0,
    自动换行=True, 多行显示=True, is初始化=True, is删除所有动态区=True,
    更新区域编号=1, 更新区域坐标=[16, 0x80, 0, 0], 更新区域宽高=[48, 0x80, 16, 0]))

# 3. Yellow text whose bytes need escaping: 'Z' = 5A, '[' = 5B, 'ア' = A5 A2 in GB 2312.
show("text_yellow_escaped", LED._修改文字_生成命令("Z[ア]", color=2, speed=1, 显示方式=2, 特技停留时间=4, 动态区运行模式=1))

# 4. Brightness 10, as the package's 修改亮度 builds it (that method sends without escaping; we escape with the
#    package's own escaper so the frame is valid whatever the check bytes are).
command = [0xA3, 0x02, 0x01, 0x00, 0x00, 0x01, 10] + [0x01] * 48
frame = LED._LED通讯__生成包尾(LED._LED通讯__生成包头(command))
show("brightness_10", LED._LED通讯__字符转义(frame))
