CREATE TABLE "credit_commands" (
	"idempotency_key" text PRIMARY KEY NOT NULL,
	"account_id" text NOT NULL,
	"amount_micros" bigint NOT NULL,
	"reference" text,
	"status" text NOT NULL,
	"reason" text,
	"transaction_id" text,
	"balance_after_micros" bigint,
	"requested_at" timestamp with time zone NOT NULL,
	"decided_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "credit_commands_outcome_check" CHECK (("credit_commands"."status" = 'applied' AND "credit_commands"."transaction_id" IS NOT NULL AND "credit_commands"."reason" IS NULL)
       OR ("credit_commands"."status" = 'refused' AND "credit_commands"."transaction_id" IS NULL AND "credit_commands"."reason" IS NOT NULL))
);
--> statement-breakpoint
ALTER TABLE "credit_commands" ADD CONSTRAINT "credit_commands_transaction_id_journal_transactions_id_fk" FOREIGN KEY ("transaction_id") REFERENCES "public"."journal_transactions"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
-- Credits posted before commands existed keep answering replays of their idempotency key (and are
-- never posted again). A bootstrap credit was keyed by the bootstrap API key's hash; it is now keyed
-- by its account (bootstrap:<account id>), so the ingress does not queue it a second time.
INSERT INTO "credit_commands" ("idempotency_key", "account_id", "amount_micros", "reference", "status", "transaction_id", "requested_at", "decided_at")
SELECT CASE WHEN t."idempotency_key" LIKE 'bootstrap:%' THEN 'bootstrap:' || l."account_id" ELSE t."idempotency_key" END,
       l."account_id", e."amount_micros", t."reference", 'applied', t."id", t."created_at", t."created_at"
  FROM "journal_transactions" t
  JOIN "journal_entries" e ON e."transaction_id" = t."id"
  JOIN "ledger_accounts" l ON l."id" = e."ledger_account_id" AND l."kind" = 'tenant'
 WHERE t."kind" = 'credit' AND t."idempotency_key" IS NOT NULL
ON CONFLICT ("idempotency_key") DO NOTHING;
