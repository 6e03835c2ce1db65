# Reads an uploaded invoice (plain text, as an accounting export or an OCR
# step writes it) and returns its fields: number, date, customer, currency,
# lines and total. The total must match the lines: an invoice that does not
# add up, or has no number or total, fails permanently (dead-lettered with
# the reason) instead of being retried.
import re
import sys
from decimal import Decimal, InvalidOperation

from sluice_function import PermanentError, Result, handler

FIELD = re.compile(r"^\s*(invoice|date|customer|bill to|currency|total)(?:\s*(?:no\.?|number|#))?\s*:\s*(.+?)\s*$", re.I)
LINE = re.compile(r"^\s*(\d+)\s*x\s+(.+?)\s+@\s*([\d.,]+)\s*$", re.I)


def amount(text, what):
    try:
        return Decimal(text.replace(",", ""))
    except InvalidOperation:
        raise PermanentError("%s: %r is not an amount" % (what, text))


@handler
def extract(req):
    if not req.get("body_path"):
        raise PermanentError("no file: this function reads uploaded invoices")
    with open(req["body_path"], encoding="utf-8", errors="replace") as f:
        text = f.read()
    fields, lines = {}, []
    for raw in text.splitlines():
        m = FIELD.match(raw)
        if m:
            key = m.group(1).lower()
            key = "customer" if key == "bill to" else key
            fields.setdefault(key, m.group(2))
            continue
        m = LINE.match(raw)
        if m:
            qty, price = int(m.group(1)), amount(m.group(3), "line %r" % m.group(2))
            lines.append({"item": m.group(2), "qty": qty, "price": price, "amount": qty * price})
    name = (req.get("object") or {}).get("key", "?")
    for need in ("invoice", "total"):
        if need not in fields:
            raise PermanentError("%s: no %s line" % (name, need))
    total = amount(fields["total"].split()[0], "total")
    added = sum(l["amount"] for l in lines)
    if lines and added != total:
        raise PermanentError("%s: lines add up to %.2f, total says %.2f" % (name, added, total))
    for l in lines:
        l["price"], l["amount"] = float(l["price"]), float(l["amount"])
    print("extracted invoice %s (%d lines) from %s" % (fields["invoice"], len(lines), name), file=sys.stderr)
    return Result({
        "invoice": fields["invoice"], "date": fields.get("date"), "customer": fields.get("customer"),
        "currency": fields.get("currency", "EUR"), "total": float(total), "lines": lines, "file": name,
    }, meta={"invoice": fields["invoice"]})
