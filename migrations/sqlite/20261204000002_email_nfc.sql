-- Email addresses in Unicode NFC (SPEC §4, look-alike accounts). SQL cannot normalize
-- Unicode portably, so this only leaves a marker: after the migrations, `migrate`
-- (src/store/email_nfc.rs) normalizes the stored addresses that are not ASCII,
-- reports those whose normal form is another account's address, and removes the
-- marker once none is left.
INSERT INTO settings (name, value) VALUES ('email_nfc_pending', '1')
    ON CONFLICT (name) DO NOTHING;
