/**
 * Canonical entities, first cut. Each has a name and a schema version; the event's
 * `schema` field is "<entity>/<version>". Add a field: same version, optional.
 * Remove or retype a field: new version, both exported.
 */
import { Type, type Static } from '@sinclair/typebox';
import { Code, DateOnly, DateTime, Decimal, Extra, Opt } from './types.ts';

export const Address = Type.Object({
  addressId: Opt(Code),
  type: Opt(Type.Union([Type.Literal('billing'), Type.Literal('shipping'), Type.Literal('other')])),
  name: Opt(Type.String()),
  line1: Opt(Type.String()),
  line2: Opt(Type.String()),
  line3: Opt(Type.String()),
  city: Opt(Type.String()),
  region: Opt(Type.String()),
  postalCode: Opt(Type.String()),
  country: Opt(Type.String()),
  phone: Opt(Type.String()),
}, { $id: 'Address', additionalProperties: false });

export const Contact = Type.Object({
  contactId: Opt(Code),
  name: Type.String(),
  title: Opt(Type.String()),
  email: Opt(Type.String()),
  phone: Opt(Type.String()),
}, { $id: 'Contact', additionalProperties: false });

export const Customer = Type.Object({
  customerId: Code,
  name: Type.String(),
  status: Opt(Type.Union([Type.Literal('active'), Type.Literal('inactive'), Type.Literal('on_hold')])),
  customerClass: Opt(Type.String()),
  currency: Opt(Type.String({ pattern: '^[A-Z]{3}$' })),
  creditLimit: Opt(Decimal),
  paymentTerms: Opt(Type.String()),
  taxId: Opt(Type.String()),
  email: Opt(Type.String()),
  phone: Opt(Type.String()),
  addresses: Type.Array(Address),
  contacts: Type.Array(Contact),
  createdAt: Opt(Type.Union([DateTime, DateOnly])),
  updatedAt: Opt(DateTime),
  extra: Extra,
}, { $id: 'customer', additionalProperties: false });

export const UnitOfMeasure = Type.Object({
  base: Code,
  sales: Opt(Code),
  purchase: Opt(Code),
  /** How many base units one `uom` holds, e.g. { uom: 'CASE', factor: '12' }. */
  conversions: Type.Optional(Type.Array(Type.Object({ uom: Code, factor: Decimal }, { additionalProperties: false }))),
}, { $id: 'UnitOfMeasure', additionalProperties: false });

export const Product = Type.Object({
  sku: Code,
  description: Type.String(),
  status: Opt(Type.Union([Type.Literal('active'), Type.Literal('inactive'), Type.Literal('discontinued')])),
  category: Opt(Type.String()),
  uom: UnitOfMeasure,
  listPrice: Opt(Decimal),
  standardCost: Opt(Decimal),
  currency: Opt(Type.String({ pattern: '^[A-Z]{3}$' })),
  weight: Opt(Decimal),
  supplierId: Opt(Code),
  updatedAt: Opt(DateTime),
  extra: Extra,
}, { $id: 'product', additionalProperties: false });

export const InventoryLevel = Type.Object({
  sku: Code,
  warehouse: Code,
  onHand: Decimal,
  allocated: Decimal,
  available: Decimal,
  onOrder: Opt(Decimal),
  uom: Opt(Code),
  updatedAt: Opt(DateTime),
  extra: Extra,
}, { $id: 'inventory_level', additionalProperties: false });

export const SalesOrderLine = Type.Object({
  lineNumber: Code,
  sku: Code,
  description: Opt(Type.String()),
  quantity: Decimal,
  uom: Opt(Code),
  unitPrice: Decimal,
  /** Fraction (0.05 = 5 %) or amount, as the mapping documents. */
  discount: Opt(Decimal),
  extendedPrice: Opt(Decimal),
  warehouse: Opt(Code),
  extra: Extra,
}, { $id: 'SalesOrderLine', additionalProperties: false });

export const SalesOrder = Type.Object({
  orderNumber: Code,
  customerId: Code,
  status: Opt(Type.String()),
  orderType: Opt(Type.String()),
  orderDate: Type.Union([DateTime, DateOnly]),
  requestedDate: Opt(Type.Union([DateTime, DateOnly])),
  shippedDate: Opt(Type.Union([DateTime, DateOnly])),
  currency: Opt(Type.String({ pattern: '^[A-Z]{3}$' })),
  subtotal: Opt(Decimal),
  freight: Opt(Decimal),
  tax: Opt(Decimal),
  total: Opt(Decimal),
  shipTo: Opt(Address),
  lines: Type.Array(SalesOrderLine),
  updatedAt: Opt(DateTime),
  extra: Extra,
}, { $id: 'sales_order', additionalProperties: false });

export const Shipment = Type.Object({
  shipmentId: Code,
  orderNumber: Opt(Code),
  customerId: Opt(Code),
  carrier: Opt(Type.String()),
  service: Opt(Type.String()),
  trackingNumbers: Type.Array(Type.String()),
  status: Opt(Type.String()),
  shippedAt: Opt(Type.Union([DateTime, DateOnly])),
  deliveredAt: Opt(Type.Union([DateTime, DateOnly])),
  freight: Opt(Decimal),
  shipTo: Opt(Address),
  updatedAt: Opt(DateTime),
  extra: Extra,
}, { $id: 'shipment', additionalProperties: false });

/** Every entity with its current schema version. One registry line per entity. */
export const ENTITIES = {
  customer: { version: 1, schema: Customer },
  product: { version: 1, schema: Product },
  inventory_level: { version: 1, schema: InventoryLevel },
  sales_order: { version: 1, schema: SalesOrder },
  shipment: { version: 1, schema: Shipment },
} as const;

export type EntityName = keyof typeof ENTITIES;
export const ENTITY_NAMES = Object.keys(ENTITIES) as EntityName[];

export type CustomerData = Static<typeof Customer>;
export type ProductData = Static<typeof Product>;
export type InventoryLevelData = Static<typeof InventoryLevel>;
export type SalesOrderData = Static<typeof SalesOrder>;
export type ShipmentData = Static<typeof Shipment>;
export type AddressData = Static<typeof Address>;
