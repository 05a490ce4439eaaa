// The built site for the page tests: `deno task web`'s build into a temporary
// directory, served over http://127.0.0.1 (a secure context, as the
// origin-private file system needs) by a minimal static server.
import { buildWeb } from "../../tools/build_web.ts";

const TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
  map: "application/json",
};

/** A built and served copy of the site; dispose to stop the server and remove the files. */
export interface Site extends AsyncDisposable {
  /** The directory holding the built files. */
  readonly dir: string;
  /** The page's URL, without query. */
  readonly url: string;
}

/** Builds the site and serves it on a free port. */
export async function serveSite(): Promise<Site> {
  const dir = await Deno.makeTempDir({ prefix: "vmakit-web-" });
  await buildWeb(dir);
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const name = new URL(req.url).pathname.slice(1) || "index.html";
    if (!/^[a-z_.]+$/.test(name)) return new Response("not found", { status: 404 });
    try {
      const body = await Deno.readFile(`${dir}/${name}`);
      const type = TYPES[name.slice(name.lastIndexOf(".") + 1)] ?? "application/octet-stream";
      return new Response(body, { headers: { "content-type": type } });
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
  return {
    dir,
    url: `http://127.0.0.1:${server.addr.port}/index.html`,
    async [Symbol.asyncDispose]() {
      await server.shutdown();
      await Deno.remove(dir, { recursive: true });
    },
  };
}
