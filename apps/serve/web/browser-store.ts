/**
 * What the page keeps in this browser's IndexedDB (database `bytelatent`): the server's model
 * weights, so that a later visit only revalidates them (`If-None-Match`, answered 304 when the files
 * did not change), and the models trained in the training tab.
 */

const DATABASE = 'bytelatent';
const WEIGHTS = 'weights';
const MODELS = 'models';

/** A weights file kept after a download, with the validator the server sent. */
interface CachedWeights {
  readonly url: string;
  readonly etag: string;
  readonly bytes: Uint8Array;
}

/** A model trained in this page and saved. */
export interface StoredModel {
  readonly id?: number;
  readonly name: string;
  readonly kind: 'entropy' | 'blt';
  readonly fileName: string;
  readonly file: Uint8Array;
  readonly steps: number;
  readonly parameters: number;
  readonly heldoutBitsPerByte: number;
  readonly savedAt: string;
}

let opened: Promise<IDBDatabase> | undefined;

function database(): Promise<IDBDatabase> {
  opened ??= new Promise((resolve, reject) => {
    const request = indexedDB.open(DATABASE, 1);
    request.onupgradeneeded = () => {
      request.result.createObjectStore(WEIGHTS, { keyPath: 'url' });
      request.result.createObjectStore(MODELS, { keyPath: 'id', autoIncrement: true });
    };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error ?? new Error('IndexedDB cannot be opened'));
  });
  return opened;
}

async function transaction<T>(store: string, mode: IDBTransactionMode, work: (s: IDBObjectStore) => IDBRequest<T>): Promise<T> {
  const db = await database();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(store, mode);
    const request = work(tx.objectStore(store));
    tx.oncomplete = () => resolve(request.result);
    tx.onerror = () => reject(tx.error ?? new Error(`IndexedDB ${store}: the transaction failed`));
    tx.onabort = () => reject(tx.error ?? new Error(`IndexedDB ${store}: the transaction was aborted`));
  });
}

/** Bytes of weights the page read from IndexedDB, and from the network, since it loaded. */
export const weightTraffic = { fromCache: 0, downloaded: 0 };

const WEIGHTS_FILE = /\.(safetensors|pth|pt|bin|ckpt)$/i;

/**
 * `fetch` for model files: a weights file (GET) comes from IndexedDB when the server says it has
 * not changed (`If-None-Match` with the stored `ETag` → 304), else from the network, and is then
 * stored with its `ETag`. Everything else, and any failure of IndexedDB (private windows, quota),
 * goes to the network as usual.
 */
export const cachingFetch: typeof fetch = async (input, init) => {
  const url = input instanceof Request ? input.url : String(input);
  if ((init?.method ?? 'GET') !== 'GET' || !WEIGHTS_FILE.test(new URL(url, location.href).pathname)) return fetch(input, init);
  const cached = await transaction<CachedWeights | undefined>(WEIGHTS, 'readonly', (s) => s.get(url)).catch(() => undefined);
  // no-store: the HTTP cache would answer the revalidation itself and hand back a full copy.
  const response = await fetch(url, { cache: 'no-store', headers: cached ? { 'If-None-Match': cached.etag } : {} });
  if (response.status === 304 && cached) {
    weightTraffic.fromCache += cached.bytes.byteLength;
    return new Response(cached.bytes as Uint8Array<ArrayBuffer>, {
      status: 200,
      headers: { 'Content-Length': String(cached.bytes.byteLength) },
    });
  }
  const etag = response.headers.get('ETag');
  if (!response.ok || etag === null) return response;
  const bytes = new Uint8Array(await response.arrayBuffer());
  weightTraffic.downloaded += bytes.byteLength;
  await transaction(WEIGHTS, 'readwrite', (s) => s.put({ url, etag, bytes } satisfies CachedWeights)).catch(() => undefined);
  return new Response(bytes as Uint8Array<ArrayBuffer>, {
    status: 200,
    headers: { 'Content-Length': String(bytes.byteLength), ETag: etag },
  });
};

/** Saves a trained model; returns its id. */
export async function saveModel(model: Omit<StoredModel, 'id'>): Promise<number> {
  return (await transaction(MODELS, 'readwrite', (s) => s.add(model))) as number;
}

/** The saved models, newest first. */
export async function listModels(): Promise<StoredModel[]> {
  const all = await transaction<StoredModel[]>(MODELS, 'readonly', (s) => s.getAll());
  return all.reverse();
}

export async function loadModel(id: number): Promise<StoredModel | undefined> {
  return transaction<StoredModel | undefined>(MODELS, 'readonly', (s) => s.get(id));
}

export async function deleteModel(id: number): Promise<void> {
  await transaction(MODELS, 'readwrite', (s) => s.delete(id));
}
