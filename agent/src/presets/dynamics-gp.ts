/**
 * Microsoft Dynamics GP presets. Column names, lengths and kinds come from the GP
 * table layouts Microsoft publishes for its GP -> Business Central migration
 * (HybridGP AL tables; see examples/dynamics-gp/README.md), plus GP's storage habits:
 *
 * - Strings are CHAR(n), right-padded: every string field trims; keys are `code`
 *   (trimmed). Blank optional strings become null (nullIf "").
 * - Money and quantities are numeric(19,5): mapped as exact decimal strings, scale
 *   kept as GP prints it ("1234.50000").
 * - "No date" is 1900-01-01 00:00:00.000: every optional date has nullIf 1900-01-01
 *   (which also matches "1900-01-01 00:00:00" and ".000"). Business dates (DOCDATE,
 *   CREATDDT, ...) are date-only in GP (midnight), so they map as `date` and need no
 *   time zone.
 * - DEX_ROW_TS is the last-change stamp GP's triggers write with GETUTCDATE(), so it
 *   is UTC whatever source.timeZone says: `updatedAt` reads it with `timeZone: UTC`.
 *   Tables whose layout has DEX_ROW_TS (RM00101, SOP30200, SOP30300) default to the
 *   cursor strategy on it; IV00101 and IV00102 have no DEX_ROW_TS in the layouts and
 *   default to diff (override `strategy`/`cursor` if your GP version has it).
 * - Booleans are tinyint 0/1; options (SOPTYPE, VOIDSTTS) are smallint codes.
 */
import type { TablePreset } from './types.ts';

const NO_DATE = '1900-01-01';
const text = (column: string) => ({ column, type: 'string', trim: true, nullIf: [''] });
const code = (column: string) => ({ column, type: 'code', nullIf: [''] });
const key = (column: string) => ({ column, type: 'code', required: true });
const decimal = (column: string) => ({ column, type: 'decimal' });
const date = (column: string) => ({ column, type: 'date', nullIf: [NO_DATE] });
const dexRowTs = { column: 'DEX_ROW_TS', type: 'datetime', timeZone: 'UTC', nullIf: [NO_DATE] };
const dexCursor = { column: 'DEX_ROW_TS', type: 'timestamp' } as const;

/** RM00101 (RM Customer Master) -> customer. */
const customers: TablePreset = {
  description: 'RM00101 customer master -> customer',
  table: 'RM00101',
  entity: 'customer',
  key: ['CUSTNMBR'],
  strategy: 'cursor',
  cursor: dexCursor,
  map: {
    customerId: key('CUSTNMBR'),
    name: { column: 'CUSTNAME', type: 'string', trim: true, required: true },
    // GP keeps two flags; inactive wins over hold, as GP blocks all entry for an inactive customer.
    status: {
      columns: ['INACTIVE', 'HOLD'],
      crosswalk: { '0,0': 'active', '0,1': 'on_hold', '1,0': 'inactive', '1,1': 'inactive' },
    },
    customerClass: text('CUSTCLAS'),
    creditLimit: decimal('CRLMTAMT'),
    paymentTerms: text('PYMTRMID'),
    phone: text('PHONE1'),
    'addresses[0].addressId': code('ADRSCODE'),
    'addresses[0].line1': text('ADDRESS1'),
    'addresses[0].line2': text('ADDRESS2'),
    'addresses[0].line3': text('ADDRESS3'),
    'addresses[0].city': text('CITY'),
    'addresses[0].region': text('STATE'),
    'addresses[0].postalCode': text('ZIP'),
    'addresses[0].country': text('COUNTRY'),
    'addresses[0].phone': text('PHONE1'),
    'contacts[0].name': text('CNTCPRSN'),
    createdAt: date('CREATDDT'),
    updatedAt: dexRowTs,
  },
};

/** IV00101 (Item Master) -> product. */
const items: TablePreset = {
  description: 'IV00101 item master -> product',
  table: 'IV00101',
  entity: 'product',
  key: ['ITEMNMBR'],
  strategy: 'diff',
  map: {
    sku: key('ITEMNMBR'),
    description: { column: 'ITEMDESC', type: 'string', trim: true, required: true },
    status: { column: 'INACTIVE', crosswalk: { 0: 'active', 1: 'inactive' } },
    category: text('ITMCLSCD'),
    // The base unit is IV40201.BASEUOFM of this schedule; most GP sites name the schedule after it (EACH, CASE).
    'uom.base': { column: 'UOMSCHDL', type: 'code', required: true },
    'uom.sales': code('SELNGUOM'),
    'uom.purchase': code('PRCHSUOM'),
    standardCost: decimal('STNDCOST'),
    'extra.currentCost': decimal('CURRCOST'),
  },
};

/** IV00102 (Item Quantity Master), site records -> inventory_level. */
const itemQuantities: TablePreset = {
  description: 'IV00102 quantities per site -> inventory_level',
  table: 'IV00102',
  entity: 'inventory_level',
  key: ['ITEMNMBR', 'LOCNCODE'],
  strategy: 'diff',
  // RCRDTYPE 1 is the all-sites total (blank LOCNCODE); 2 is one row per site.
  where: '{RCRDTYPE} = 2',
  map: {
    sku: key('ITEMNMBR'),
    warehouse: key('LOCNCODE'),
    onHand: { column: 'QTYONHND', type: 'decimal', required: true },
    allocated: { column: 'ATYALLOC', type: 'decimal', required: true },
    // GP stores no available quantity; it is on hand minus allocated, in exact decimals.
    available: { subtract: ['QTYONHND', 'ATYALLOC'], type: 'decimal', required: true },
  },
};

const SOP_TYPES = { 1: 'quote', 2: 'order', 3: 'invoice', 4: 'return', 5: 'back_order', 6: 'fulfillment_order' };

/** SOP30200 (sales history header) with SOP30300 lines -> sales_order. */
const salesHistory: TablePreset = {
  description: 'SOP30200 posted sales documents with SOP30300 lines -> sales_order',
  table: 'SOP30200',
  entity: 'sales_order',
  key: ['SOPTYPE', 'SOPNUMBE'],
  strategy: 'cursor',
  cursor: dexCursor,
  map: {
    orderNumber: key('SOPNUMBE'),
    orderType: { column: 'SOPTYPE', crosswalk: SOP_TYPES },
    status: { column: 'VOIDSTTS', crosswalk: { 0: 'posted', 1: 'voided' } },
    customerId: key('CUSTNMBR'),
    orderDate: { column: 'DOCDATE', type: 'date', required: true },
    requestedDate: date('ReqShipDate'),
    shippedDate: date('ACTLSHIP'),
    subtotal: decimal('SUBTOTAL'),
    freight: decimal('FRTAMNT'),
    tax: decimal('TAXAMNT'),
    total: decimal('DOCAMNT'),
    'shipTo.name': text('ShipToName'),
    'shipTo.line1': text('ADDRESS1'),
    'shipTo.line2': text('ADDRESS2'),
    'shipTo.line3': text('ADDRESS3'),
    'shipTo.city': text('CITY'),
    'shipTo.region': text('STATE'),
    'shipTo.postalCode': text('ZIPCODE'),
    'shipTo.country': text('COUNTRY'),
    'shipTo.phone': text('PHNUMBR1'),
    // No nullIf: the mapper turns an all-null `extra` into null, which the schema refuses; blank stays "".
    'extra.customerPo': { column: 'CSTPONBR', type: 'string', trim: true },
    updatedAt: dexRowTs,
  },
  children: {
    lines: {
      table: 'SOP30300',
      parentKey: ['SOPTYPE', 'SOPNUMBE'],
      orderBy: ['LNITMSEQ'],
      // Kit components (CMPNTSEQ > 0) repeat their kit's LNITMSEQ; the order line is the kit itself.
      where: '{CMPNTSEQ} = 0',
      into: 'lines',
      map: {
        lineNumber: { column: 'LNITMSEQ', type: 'code', required: true },
        sku: key('ITEMNMBR'),
        description: text('ITEMDESC'),
        quantity: { column: 'QUANTITY', type: 'decimal', required: true },
        uom: code('UOFM'),
        unitPrice: { column: 'UNITPRCE', type: 'decimal', required: true },
        extendedPrice: decimal('XTNDPRCE'),
        warehouse: code('LOCNCODE'),
      },
    },
  },
};

export const DYNAMICS_GP_PRESETS: Record<string, TablePreset> = {
  'dynamics-gp/customers': customers,
  'dynamics-gp/items': items,
  'dynamics-gp/item-quantities': itemQuantities,
  'dynamics-gp/sales-history': salesHistory,
};
