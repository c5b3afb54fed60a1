import { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  NoSuchKey,
  S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { FileStore } from './store.ts';

export interface S3StoreOptions {
  bucket: string;
  /** Key prefix of every file's object (`files/`), so the bucket can hold other things. */
  prefix: string;
  region: string;
  /** An S3-compatible server (MinIO, Ceph, R2, moto…); unset: AWS. */
  endpoint?: string;
  /** Path-style URLs (`endpoint/bucket/key`), which most S3-compatible servers need. */
  forcePathStyle: boolean;
  /** Explicit credentials; unset: the SDK's default chain (env, profile, IRSA, instance role). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
}

/** Parts of this size are uploaded (S3's minimum), this many at once: an upload holds ≤ 10 MiB. */
const PART_BYTES = 5 * 1024 * 1024;
const PARTS_AT_ONCE = 2;

/**
 * File bytes as one object per file in an S3-compatible bucket. Uploads are streamed as a
 * multipart upload (bounded memory whatever the file's size; an upload of one part is a single
 * PUT), downloads are streamed from the object's body. A put of no bytes stores nothing, as in
 * Postgres, and reading a file with no object yields nothing.
 */
export class S3FileStore implements FileStore {
  readonly #s3: S3Client;
  readonly #bucket: string;
  readonly #prefix: string;

  constructor(o: S3StoreOptions) {
    this.#s3 = new S3Client({
      region: o.region,
      forcePathStyle: o.forcePathStyle,
      ...(o.endpoint ? { endpoint: o.endpoint } : {}),
      ...(o.credentials ? { credentials: o.credentials } : {}),
    });
    this.#bucket = o.bucket;
    this.#prefix = o.prefix;
  }

  #key(fileId: string): string {
    return `${this.#prefix}${fileId}`;
  }

  async put(fileId: string, source: AsyncIterable<Buffer>): Promise<void> {
    const it = source[Symbol.asyncIterator]();
    let first = await it.next();
    while (!first.done && first.value.length === 0) first = await it.next();
    if (first.done) return;
    const head = first.value;
    async function* rest(): AsyncIterable<Buffer> {
      yield head;
      for (let r = await it.next(); !r.done; r = await it.next()) yield r.value;
    }
    const upload = new Upload({
      client: this.#s3,
      params: {
        Bucket: this.#bucket,
        Key: this.#key(fileId),
        Body: Readable.from(rest()),
        ContentType: 'application/jsonl',
      },
      partSize: PART_BYTES,
      queueSize: PARTS_AT_ONCE,
      leavePartsOnError: false,
    });
    await upload.done();
  }

  async *get(fileId: string): AsyncIterable<Buffer> {
    let body: Readable;
    try {
      const r = await this.#s3.send(new GetObjectCommand({ Bucket: this.#bucket, Key: this.#key(fileId) }));
      body = r.Body as Readable;
    } catch (e) {
      if (e instanceof NoSuchKey) return;
      throw e;
    }
    yield* body as AsyncIterable<Buffer>;
  }

  async delete(fileId: string): Promise<void> {
    await this.#s3.send(new DeleteObjectCommand({ Bucket: this.#bucket, Key: this.#key(fileId) }));
  }

  async *list(): AsyncIterable<string> {
    let token: string | undefined;
    do {
      const r = await this.#s3.send(
        new ListObjectsV2Command({ Bucket: this.#bucket, Prefix: this.#prefix, ContinuationToken: token }),
      );
      for (const o of r.Contents ?? []) if (o.Key) yield o.Key.slice(this.#prefix.length);
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
  }

  close(): void {
    this.#s3.destroy();
  }
}
