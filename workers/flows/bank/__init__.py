"""Bank statements: the banks' files (CAMT.053, OFX, MT940, CSV) read into one
normalised shape (``statement``), written and matched by one SQL function
(``api.import_bank_statement``; docs/reconciliation.md)."""
