-- The bootstrap key (FAREGATE_BOOTSTRAP_KEY, a string the operator chose) was stored and listed with
-- its first 12 characters as its prefix: a short key whole, a longer one mostly. Such a key now shows
-- an eighth of itself, at most 4 characters, then '…' (displayPrefix in src/api-keys.ts). Its length
-- is not known here when the prefix holds 12 characters: this keeps 1 character, and the ingress
-- writes the exact prefix at its next start (ensureBootstrapAccount). Keys the gateway generated
-- (named by the admin) keep theirs.
UPDATE "api_keys"
SET "prefix" = left("prefix", least(4, length("prefix") / 8)) || '…'
WHERE "name" = 'bootstrap' AND "prefix" NOT LIKE '%…';
