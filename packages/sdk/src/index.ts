/** The package entry: `import { Switchyard } from '@switchyard/sdk'`. */
export { Switchyard } from './client.ts';
export { ChatStream } from './chat-stream.ts';
export { Assembler } from './assemble.ts';
export {
  type ErrorObject,
  SwitchyardConnectionError,
  SwitchyardError,
  type SwitchyardErrorInit,
} from './errors.ts';
export type {
  ChatBody,
  ChatCompletion,
  ChatCompletionChunk,
  ChatRequest,
  ChatStreamBody,
  Frame,
  FrameOf,
  FrameType,
  Job,
  JobResult,
  JobState,
  RequestOptions,
  SubmittedJob,
  SubscribeOptions,
  SwitchyardOptions,
  WebSocketConstructor,
  WebSocketLike,
} from './types.ts';
