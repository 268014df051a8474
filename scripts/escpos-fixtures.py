#!/usr/bin/env python3
"""Golden ESC/POS streams from python-escpos, an implementation independent of ours.

Writes Tests/ProtocolTests/Fixtures/escpos/<name>.bin (what python-escpos's Dummy printer recorded) and <name>.json
(what it was asked to print: lines with their alignment, size, bold and Chinese mode; cuts; feeds; QR codes; status
requests), plus constants.json with python-escpos's command constants as hex strings.

    pip install python-escpos==3.1      # pinned in scripts/requirements-test.txt
    python3 scripts/escpos-fixtures.py

python-escpos has no API for FS & / FS . (Chinese mode) nor for GS a (automatic status back): its magic encoder
writes CJK text as raw GB18030 and assumes the printer already is in Chinese mode. So Chinese lines are sent as
_raw(FS &) + text(...) + _raw(FS .), and GS a n as _raw, with their codes from Epson's ESC/POS reference.
"""
import json
import pathlib

import escpos
from escpos import constants as c
from PIL import Image
from escpos.printer import Dummy

assert escpos.__version__.startswith("3.1"), f"python-escpos 3.1 expected, found {escpos.__version__}"

OUT = pathlib.Path(__file__).resolve().parent.parent / "Tests/ProtocolTests/Fixtures/escpos"
FS_CHINESE_ON = b"\x1c\x26"   # Epson ESC/POS: FS & select Kanji character mode
FS_CHINESE_OFF = b"\x1c\x2e"  # Epson ESC/POS: FS . cancel Kanji character mode
EC_NAMES = {c.QR_ECLEVEL_L: "L", c.QR_ECLEVEL_M: "M", c.QR_ECLEVEL_Q: "Q", c.QR_ECLEVEL_H: "H"}


class Recorder:
    """Drives a python-escpos Dummy printer and notes what each call asks the printer to print."""

    def __init__(self, name, **dummy_args):
        self.name = name
        self.p = Dummy(**dummy_args)
        self.calls, self.lines, self.cuts, self.feeds, self.qr_codes = [], [], [], [], []
        self.status_requests, self.status_back_masks, self.others = [], [], []
        self.reset_state()

    def reset_state(self):
        self.state = {"align": "left", "width": 1, "height": 1, "bold": False}

    def init(self):
        self.calls.append("hw('INIT')")
        self.p.hw("INIT")
        self.reset_state()

    def align(self, align):
        self.calls.append(f"set(align={align!r})")
        self.p.set(align=align)
        self.state["align"] = align

    def custom_size(self, width, height):
        self.calls.append(f"set(custom_size=True, width={width}, height={height})")
        self.p.set(custom_size=True, width=width, height=height)
        self.state.update(width=width, height=height)

    def double(self, double_width, double_height):
        self.calls.append(f"set(double_width={double_width}, double_height={double_height}, "
                          f"normal_textsize={not (double_width or double_height)})")
        self.p.set(double_width=double_width, double_height=double_height,
                   normal_textsize=not (double_width or double_height))
        # ESC ! n rewrites the emphasis bit too, so bold is off afterwards.
        self.state.update(width=2 if double_width else 1, height=2 if double_height else 1, bold=False)

    def bold(self, on):
        self.calls.append(f"set(bold={on})")
        self.p.set(bold=on)
        self.state["bold"] = on

    def line(self, text):
        self.calls.append(f"textln({text!r})")
        self.p.textln(text)
        self.lines.append({"text": text, "chinese": False, **self.state})

    def chinese_line(self, text):
        self.calls.append(f"_raw(FS &); text({text!r}); _raw(FS .); ln()")
        self.p._raw(FS_CHINESE_ON)
        self.p.text(text)
        self.p._raw(FS_CHINESE_OFF)
        self.p.ln()
        self.lines.append({"text": text, "chinese": True, **self.state})

    def qr(self, payload, size=3, ec=c.QR_ECLEVEL_L, model=c.QR_MODEL_2):
        self.calls.append(f"qr({payload!r}, size={size}, ec={ec}, model={model}, native=True)")
        self.p.qr(payload, size=size, ec=ec, model=model, native=True)
        self.qr_codes.append({"payload": payload, "size": size, "errorCorrection": EC_NAMES[ec], "model": model})

    def ln(self):
        self.calls.append("ln()")
        self.p.ln()

    def feed(self, lines):
        self.calls.append(f"print_and_feed({lines})")
        self.p.print_and_feed(lines)
        self.feeds.append(lines)

    def cut(self, mode="FULL", feed=True):
        self.calls.append(f"cut(mode={mode!r}, feed={feed})")
        self.p.cut(mode=mode, feed=feed)
        if feed:
            self.feeds.append(6)  # cut() prints and feeds 6 lines (ESC d 6) first
            self.cuts.append({"mode": mode.lower().replace("part", "partial"), "feed": None})
        else:
            # python-escpos 3.1 sends GS V 66 0 (feed 0, then partial cut) for feed=False, whatever the mode.
            self.cuts.append({"mode": "partial", "feed": 0})

    def other(self, call, action, name):
        """A python-escpos call that changes nothing the fixture's lines record (underline, fonts, barcodes, images,
        the drawer, the buzzer …): noted by name, so the decoder's test can tell it was decoded, not discarded."""
        self.calls.append(call)
        action(self.p)
        self.others.append(name)

    def status_request(self, n):
        self.calls.append(f"_raw(RT_STATUS + bytes([{n}]))")
        self.p._raw(c.RT_STATUS + bytes([n]))
        self.status_requests.append(n)

    def enable_status_back(self, mask):
        self.calls.append(f"_raw(GS a {mask})")
        self.p._raw(b"\x1d\x61" + bytes([mask]))  # Epson ESC/POS: GS a n enable automatic status back
        self.status_back_masks.append(mask)

    def write(self, extra=None):
        (OUT / f"{self.name}.bin").write_bytes(self.p.output)
        description = {
            "generator": f"python-escpos {escpos.__version__} escpos.printer.Dummy",
            "calls": self.calls,
            "lines": self.lines,
            "cuts": self.cuts,
            "feeds": self.feeds,
            "qrCodes": self.qr_codes,
            "statusRequests": self.status_requests,
            "automaticStatusBackMasks": self.status_back_masks,
            "otherCommands": self.others,
        }
        if extra:
            description.update(extra)
        (OUT / f"{self.name}.json").write_text(json.dumps(description, ensure_ascii=False, indent=2) + "\n")


def ticket(name, number, service, waiting, issued_at, hall=None, footer=None, qr=None, scale=3, cut="FULL"):
    """The layout our Ticket encoder uses, built with python-escpos; the magic encoder starts on CP437 so it sends
    no ESC t before ASCII text and the bytes can be compared one for one."""
    r = Recorder(name, magic_encode_args={"encoding": "CP437"})
    r.init()
    r.align("center")
    if hall:
        r.chinese_line(hall)
    r.custom_size(scale, scale)
    r.bold(True)
    r.line(number)
    r.bold(False)
    r.custom_size(1, 1)
    r.chinese_line(service)
    r.chinese_line(f"前面还有 {waiting} 人")
    r.line(issued_at)
    if qr:
        r.qr(qr, size=6, ec=c.QR_ECLEVEL_M)
        r.ln()
    if footer:
        r.chinese_line(footer)
    r.cut(mode=cut)
    r.write({"ticket": {"number": number, "serviceName": service, "waitingAhead": waiting, "issuedAt": issued_at,
                        "hallName": hall, "footer": footer, "qrPayload": qr, "numberScale": scale,
                        "cut": "full" if cut == "FULL" else "partial"}})


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    ticket("ticket-full-cut", "A023", "社保业务", 5, "2026-11-25 09:30", hall="市民服务中心",
           footer="请留意叫号", qr="https://hall.example/q/A023")
    ticket("ticket-partial-cut", "B107", "不动产登记", 12, "2026-11-25 14:05", scale=2, cut="PART")

    # ESC ! sizes, every alignment, bold, code page 437 text; default magic encoder (it sends ESC t 0 first).
    r = Recorder("styles-double-size")
    r.init()
    r.align("left")
    r.line("Normal left")
    r.double(True, True)
    r.line("Double both")
    r.align("right")
    r.double(True, False)
    r.bold(True)
    r.line("Wide bold right")
    r.double(False, True)
    r.line("Tall")
    r.align("center")
    r.double(False, False)
    r.line("Café Müller ½")
    r.custom_size(8, 1)
    r.line("W8")
    r.custom_size(1, 8)
    r.line("H8")
    r.cut(feed=False)
    r.write()
    assert b"\x1bt" not in r.p.output or b"\x1bt\x00" in r.p.output, "expected code page 437 (ESC t 0) only"

    # Real-time status requests and automatic status back between printing.
    r = Recorder("status-requests")
    r.init()
    r.enable_status_back(0x0E)
    r.status_request(1)
    r.line("Status check")
    r.status_request(2)
    r.status_request(3)
    r.status_request(4)
    r.feed(3)
    r.enable_status_back(0)
    r.cut(mode="PART")
    r.write()

    # Runs longer than the decoder's 256-byte text frames, ASCII and Chinese; a QR code with other settings.
    r = Recorder("long-text-and-qr", magic_encode_args={"encoding": "CP437"})
    r.init()
    r.line("0123456789" * 30)
    r.chinese_line("政务服务大厅欢迎您" * 20)
    r.qr("QR-" + "7" * 40, size=3, ec=c.QR_ECLEVEL_H, model=c.QR_MODEL_1)
    r.qr("HALL", size=16, ec=c.QR_ECLEVEL_Q)
    r.cut()
    r.write()

    # A ticket as a shop's python-escpos code writes it: the default magic encoder picks a code page per character
    # (ESC t n before each change), and set(), barcode(), image(), line_spacing(), cashdraw(), buzzer() and control()
    # emit commands the hall does not act on; the decoder must know every one of them (nothing discarded).
    r = Recorder("ticket-code-pages")
    r.init()
    r.line("Café Müller")
    r.line("Prix: 5,00 €")
    r.line("Ελληνικά")
    r.line("Grüße ½")
    r.other("set(underline=2, font='b', invert=True, smooth=True, flip=True, density=5)",
            lambda p: p.set(underline=2, font="b", invert=True, smooth=True, flip=True, density=5), "set")
    r.line("Small print")
    r.other("set(underline=0, font='a', invert=False, smooth=False, flip=False)",
            lambda p: p.set(underline=0, font="a", invert=False, smooth=False, flip=False), "set")
    r.other("line_spacing(30)", lambda p: p.line_spacing(30), "line_spacing")
    r.other("line_spacing()", lambda p: p.line_spacing(), "line_spacing")
    r.other("barcode('4006381333931', 'EAN13', align_ct=False)",
            lambda p: p.barcode("4006381333931", "EAN13", 64, 2, "BELOW", "A", align_ct=False), "barcode")
    r.other("barcode('{BHALL123', 'CODE128', function_type='B', align_ct=False)",
            lambda p: p.barcode("{BHALL123", "CODE128", function_type="B", align_ct=False), "barcode")
    for impl in ["bitImageRaster", "bitImageColumn", "graphics"]:
        r.other(f"image(16x8 white, impl={impl!r}, center=False)",
                lambda p, impl=impl: p.image(Image.new("1", (16, 8), 1), impl=impl, center=False), "image")
    r.other("control('HT')", lambda p: p.control("HT"), "control")
    r.other("cashdraw(2)", lambda p: p.cashdraw(2), "cashdraw")
    r.other("buzzer(2, 1)", lambda p: p.buzzer(2, 1), "buzzer")
    r.other("panel_buttons(False)", lambda p: p.panel_buttons(False), "panel_buttons")
    r.cut()
    r.write()
    assert b"\x1bt\x0f" in r.p.output, "expected ISO 8859-7 (ESC t 15) for the Greek line"

    constants = {
        "HW_INIT": c.HW_INIT,
        "CTL_LF": c.CTL_LF,
        "TXT_ALIGN_LT": c.TXT_STYLE["align"]["left"],
        "TXT_ALIGN_CT": c.TXT_STYLE["align"]["center"],
        "TXT_ALIGN_RT": c.TXT_STYLE["align"]["right"],
        "TXT_BOLD_ON": c.TXT_STYLE["bold"][True],
        "TXT_BOLD_OFF": c.TXT_STYLE["bold"][False],
        "TXT_SIZE": c.TXT_SIZE,
        "TXT_NORMAL": c.TXT_NORMAL,
        "TXT_2HEIGHT": c.TXT_STYLE["size"]["2h"],
        "TXT_2WIDTH": c.TXT_STYLE["size"]["2w"],
        "TXT_4SQUARE": c.TXT_STYLE["size"]["2x"],
        "PAPER_FULL_CUT": c.PAPER_FULL_CUT,
        "PAPER_PART_CUT": c.PAPER_PART_CUT,
        "RT_STATUS_ONLINE": c.RT_STATUS_ONLINE,
        "RT_STATUS_PAPER": c.RT_STATUS_PAPER,
        "RT_MASK_ONLINE": bytes([c.RT_MASK_ONLINE]),
        "RT_MASK_PAPER": bytes([c.RT_MASK_PAPER]),
        "RT_MASK_LOWPAPER": bytes([c.RT_MASK_LOWPAPER]),
        "RT_MASK_NOPAPER": bytes([c.RT_MASK_NOPAPER]),
        "QR_ECLEVEL_L": bytes([c.QR_ECLEVEL_L]),
        "QR_ECLEVEL_M": bytes([c.QR_ECLEVEL_M]),
        "QR_ECLEVEL_Q": bytes([c.QR_ECLEVEL_Q]),
        "QR_ECLEVEL_H": bytes([c.QR_ECLEVEL_H]),
        "QR_MODEL_1": bytes([c.QR_MODEL_1]),
        "QR_MODEL_2": bytes([c.QR_MODEL_2]),
        "QR_MICRO": bytes([c.QR_MICRO]),
    }
    for width in range(1, 9):
        for height in range(1, 9):
            constants[f"CUSTOM_SIZE_{width}x{height}"] = c.TXT_SIZE + bytes(
                [c.TXT_STYLE["width"][width] + c.TXT_STYLE["height"][height]])
    # Method output, recorded by Dummy: feed before cut, the no-feed cut, and native QR codes.
    for key, action in {
        "PRINT_AND_FEED_6": lambda p: p.print_and_feed(6),
        "CUT_NO_FEED": lambda p: p.cut(feed=False),
        "QR_NATIVE_M6": lambda p: p.qr("https://hall.example/q/A023", size=6, ec=c.QR_ECLEVEL_M, native=True),
        "QR_NATIVE_DEFAULT": lambda p: p.qr("A023", native=True),
    }.items():
        p = Dummy()
        action(p)
        constants[key] = p.output
    (OUT / "constants.json").write_text(
        json.dumps({k: v.hex() for k, v in constants.items()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
