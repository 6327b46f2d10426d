"""Reads a report of report_file.c with independent readers (openpyxl, the
csv module, zipfile) and prints what it finds as JSON for test_report_file.c
to check.

    report_file_check.py xlsx FILE      every cell of both sheets
    report_file_check.py xlsx-big FILE  counts and a few rows (read-only mode)
    report_file_check.py csv FILE       the rows as the csv module reads them

Text cells are decoded as Excel shows them: openpyxl leaves the _xHHHH_
escapes of ECMA-376 (ST_Xstring) as they are in the file, Excel does not.
Run with /usr/bin/python3 (Debian's python3-openpyxl).
"""
import csv
import io
import json
import re
import sys
import zipfile

import openpyxl

ESC = re.compile(r"_x([0-9A-Fa-f]{4})_")


def excel_text(s):
    return ESC.sub(lambda m: chr(int(m.group(1), 16)), s) if isinstance(s, str) else s


def formula_elements(path):
    """<f> elements in the worksheets' XML: a formula, whatever openpyxl says.
    Text cannot hide one: a '<' in text is written as &lt;."""
    n = 0
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            if name.startswith("xl/worksheets/") and name.endswith(".xml"):
                data = z.read(name)
                n += data.count(b"<f>") + data.count(b"<f ")
    return n


def comment_count(path):
    n = 0
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            if re.match(r"xl/comments\d+\.xml$", name):
                n += z.read(name).count(b"<comment ")
    return n


def cell_json(c):
    out = {"t": c.data_type}
    if c.value is not None:
        v = c.value
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        out["v"] = excel_text(v) if isinstance(v, str) else v
    fill = getattr(c, "fill", None)
    if fill is not None and fill.fill_type == "solid":
        out["fill"] = str(fill.fgColor.rgb)[-6:]
    font = getattr(c, "font", None)
    if font is not None and font.b:
        out["bold"] = True
    if getattr(c, "comment", None) is not None:
        out["comment"] = excel_text(c.comment.text)
    return out


def dump_xlsx(path):
    wb = openpyxl.load_workbook(path)
    out = {
        "sheets": wb.sheetnames,
        "active": wb.active.title,
        "formula_elements": formula_elements(path),
        "comments": comment_count(path),
        "formula_cells": 0,
        "sheet": {},
    }
    for ws in wb.worksheets:
        rows = []
        for row in ws.iter_rows(min_row=1, max_row=ws.max_row, max_col=ws.max_column):
            cells = []
            for c in row:
                if c.data_type == "f":
                    out["formula_cells"] += 1
                cells.append(cell_json(c))
            rows.append(cells)
        widths = {k: v.width for k, v in ws.column_dimensions.items()}
        out["sheet"][ws.title] = {
            "freeze": ws.freeze_panes,
            "autofilter": ws.auto_filter.ref,
            "widths": widths,
            "rows": rows,
        }
    return out


def dump_xlsx_big(path):
    wb = openpyxl.load_workbook(path, read_only=True)
    out = {
        "sheets": wb.sheetnames,
        "formula_elements": formula_elements(path),
        "comments": comment_count(path),
        "formula_cells": 0,
        "sheet": {},
    }
    for ws in wb.worksheets:
        n = 0
        first, last = [], None
        for row in ws.iter_rows():
            vals = []
            for c in row:
                if c.data_type == "f":
                    out["formula_cells"] += 1
                v = c.value
                if isinstance(v, float) and v.is_integer():
                    v = int(v)
                vals.append(excel_text(v))
            if n < 3:
                first.append(vals)
            last = vals
            n += 1
        out["sheet"][ws.title] = {"nrows": n, "first": first, "last": last}
        if ws.title == "Summary":
            out["sheet"][ws.title]["rows"] = [
                [excel_text(v) for v in r] for r in ws.iter_rows(values_only=True)
            ]
    return out


def dump_csv(path):
    with open(path, "rb") as f:
        data = f.read()
    text = data.decode("utf-8-sig")  # strict: invalid UTF-8 fails here
    rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    return {"bom": data.startswith(b"\xef\xbb\xbf"), "rows": rows}


def main():
    mode, path = sys.argv[1], sys.argv[2]
    dump = {"xlsx": dump_xlsx, "xlsx-big": dump_xlsx_big, "csv": dump_csv}[mode]
    json.dump(dump(path), sys.stdout, ensure_ascii=True)


if __name__ == "__main__":
    main()
