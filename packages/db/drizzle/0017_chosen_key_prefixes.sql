-- A key the operator chose (FAREGATE_BOOTSTRAP_KEY) was stored and listed with its first 12
-- characters as its prefix: a short key whole, a longer one mostly. Such a key now shows an eighth of
-- itself, at most 4 characters, then '…' (displayPrefix in src/api-keys.ts). Keys of ours
-- (`fg_live_` and 4 characters) keep theirs. A stored prefix of 12 characters may be the start of a
-- longer key, whose length is not known here: it keeps 1 character.
UPDATE "api_keys"
SET "prefix" = left("prefix", least(4, length("prefix") / 8)) || '…'
WHERE NOT ("prefix" LIKE 'fg\_live\_%' AND length("prefix") = 12);
