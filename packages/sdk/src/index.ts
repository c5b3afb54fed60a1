/** The package entry: `import { Faregate } from '@faregate/sdk'`. */
export { Faregate } from './client.ts';
export { ChatStream } from './chat-stream.ts';
export { Assembler } from './assemble.ts';
export { Batches, Files, type ListOptions, type Page } from './batches.ts';
export {
  type ErrorObject,
  FaregateConnectionError,
  FaregateError,
  type FaregateErrorInit,
} from './errors.ts';
export type {
  BatchObject,
  BatchProgress,
  BatchProgressEvent,
  BatchProgressGap,
  BatchRequestCounts,
  BatchStatus,
  FileObject,
  ChatBody,
  ChatCompletion,
  ChatCompletionChunk,
  ChatRequest,
  ChatStreamBody,
  Frame,
  FrameOf,
  FrameType,
  Job,
  ChoiceOutput,
  JobResult,
  JobState,
  RequestOptions,
  SubmittedJob,
  SubscribeOptions,
  FaregateOptions,
  WebSocketConstructor,
  WebSocketLike,
} from './types.ts';
