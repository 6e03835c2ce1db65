// Prices an order: list prices, a volume discount and VAT by country.
// Unknown products or countries are permanent errors (a 4xx answer).
const { handler, PermanentError } = require('sluice-function');

const PRICES = { widget: 4.5, gadget: 12.0, gizmo: 99.0 };
const VAT = { FR: 0.2, DE: 0.19, IE: 0.23, US: 0 };

handler((req) => {
  const order = req.payload || {};
  if (!Array.isArray(order.items) || order.items.length === 0) {
    throw new PermanentError('items: want a non-empty list of {sku, qty}');
  }
  if (!(order.country in VAT)) {
    throw new PermanentError(`country ${JSON.stringify(order.country)}: we ship to ${Object.keys(VAT).join(', ')}`);
  }
  let subtotal = 0;
  const lines = order.items.map(({ sku, qty }) => {
    if (!(sku in PRICES)) throw new PermanentError(`unknown product ${JSON.stringify(sku)}`);
    if (!Number.isInteger(qty) || qty < 1) throw new PermanentError(`${sku}: qty must be a positive integer`);
    const amount = Math.round(PRICES[sku] * qty * 100) / 100;
    subtotal += amount;
    return { sku, qty, unit: PRICES[sku], amount };
  });
  const units = order.items.reduce((n, i) => n + i.qty, 0);
  const discount = units >= 100 ? 0.1 : units >= 20 ? 0.05 : 0;
  const net = Math.round(subtotal * (1 - discount) * 100) / 100;
  const vat = Math.round(net * VAT[order.country] * 100) / 100;
  return { lines, subtotal, discount, net, vat, total: Math.round((net + vat) * 100) / 100, currency: 'EUR' };
});
