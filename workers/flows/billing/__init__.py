"""The money side in Python: rendering statements to PDF and storing them.

The figures are computed in SQL (sql/schema/billing); this package only turns
a statement document (``api.statement_document``) into a PDF and stores it once
(``billing.store_invoice_document``).
"""
