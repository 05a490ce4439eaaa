// The library's node:stream Transform wrapper, for the CLI's compressors.
export { nodeTransformToWeb } from "../compress/_node_transform.ts";
