import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { CreateBucketCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { expect } from 'vitest';
import { until } from '@faregate/testing/env';
import { freePort, type Stack } from './stack.ts';

/**
 * A real S3-compatible server for the tests: moto's server mode (`moto_server`, from PyPI's
 * `moto[server]`; .ci/run installs it when missing), on a free port of its own, with one bucket.
 * `env` is what an ingress needs to keep its files there.
 */
export interface S3Server {
  endpoint: string;
  bucket: string;
  client: S3Client;
  env: Record<string, string>;
  /** The file ids that have an object in the bucket. */
  fileIds(): Promise<string[]>;
  stop(): Promise<void>;
}

const PREFIX = 'files/';

export async function startS3Server(): Promise<S3Server> {
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  const proc: ChildProcess = spawn('moto_server', ['-H', '127.0.0.1', '-p', String(port)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  proc.stdout?.on('data', (b: Buffer) => output.push(b.toString()));
  proc.stderr?.on('data', (b: Buffer) => output.push(b.toString()));
  const spawned = new Promise<void>((resolve, reject) => {
    proc.once('spawn', resolve);
    proc.once('error', (e) =>
      reject(
        new Error(`moto_server could not start (pip install 'moto[server]'; .ci/run does): ${e.message}`),
      ),
    );
  });
  await spawned;
  const credentials = { accessKeyId: 'testing', secretAccessKey: 'testing' };
  const client = new S3Client({ region: 'us-east-1', endpoint, forcePathStyle: true, credentials });
  const bucket = `faregate-${port}`;
  try {
    await until(
      async () => {
        if (proc.exitCode !== null) throw new Error(`moto_server exited: ${output.join('')}`);
        return fetch(endpoint).then(
          (r) => r.ok,
          () => false,
        );
      },
      { timeoutMs: 30_000, what: 'moto_server' },
    );
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  } catch (e) {
    proc.kill('SIGKILL');
    throw e;
  }
  return {
    endpoint,
    bucket,
    client,
    env: {
      FILES_STORAGE: 's3',
      S3_BUCKET: bucket,
      S3_PREFIX: PREFIX,
      S3_ENDPOINT: endpoint,
      S3_REGION: 'us-east-1',
      S3_FORCE_PATH_STYLE: 'true',
      AWS_ACCESS_KEY_ID: credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
    },
    async fileIds() {
      const ids: string[] = [];
      let token: string | undefined;
      do {
        const r = await client.send(
          new ListObjectsV2Command({ Bucket: bucket, Prefix: PREFIX, ContinuationToken: token }),
        );
        for (const o of r.Contents ?? []) if (o.Key) ids.push(o.Key.slice(PREFIX.length));
        token = r.IsTruncated ? r.NextContinuationToken : undefined;
      } while (token);
      return ids;
    },
    async stop() {
      client.destroy();
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await once(proc, 'exit');
      clearTimeout(t);
    },
  };
}

/** A storage backend the file tests run against: the ingress's environment for it, the file ids with bytes in it. */
export interface Backend {
  env: Record<string, string>;
  storedIds(stack: Stack): Promise<string[]>;
  /** Stores bytes under `id` behind the gateway's back (something else sharing the store). */
  putStray(stack: Stack, id: string): Promise<void>;
  stop(): Promise<void>;
}

const pgChunkIds = async (stack: Stack) =>
  (await stack.sql.query<{ file_id: string }>('SELECT DISTINCT file_id FROM file_chunks')).rows.map(
    (r) => r.file_id,
  );

/** Postgres (the default) and an S3-compatible server (moto), each real. */
export const backends: Record<string, () => Promise<Backend>> = {
  postgres: async () => ({
    env: {},
    storedIds: pgChunkIds,
    putStray: async (stack, id) => {
      await stack.sql.query(`INSERT INTO file_chunks (file_id, seq, data) VALUES ($1, 0, 'x')`, [id]);
    },
    stop: async () => {},
  }),
  s3: async () => {
    const s3 = await startS3Server();
    return {
      env: s3.env,
      storedIds: async (stack) => {
        // Nothing of a file kept in S3 lands in Postgres.
        expect(await pgChunkIds(stack)).toEqual([]);
        return s3.fileIds();
      },
      putStray: async (_stack, id) => {
        await s3.client.send(
          new PutObjectCommand({ Bucket: s3.bucket, Key: `${s3.env.S3_PREFIX}${id}`, Body: 'x' }),
        );
      },
      stop: () => s3.stop(),
    };
  },
};
