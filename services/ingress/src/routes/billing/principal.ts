// The authenticated caller, set by the ingress auth hook before billing routes run.
declare module 'fastify' {
  interface FastifyRequest {
    principal?: { accountId: string; keyId: string; scopes: string[]; allowedModels?: string[] | null };
  }
}

export {};
