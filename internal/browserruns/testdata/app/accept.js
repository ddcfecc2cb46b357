// The fixture's acceptance command: it drives the browser it is given over CDP
// (CDP_WS_URL) against the booted app (CDP_TARGET_URL), with Node's WebSocket and no
// library. One assertion passes and one fails (ACCEPT_ONLY_PASSING=1 skips the
// failing one). It writes playwright-report/index.html and artifacts/home.png.
const fs = require('fs');
const ws = new WebSocket(process.env.CDP_WS_URL);
let nextId = 1;
const pending = new Map();
const waiters = [];
ws.onmessage = (m) => {
  const msg = JSON.parse(typeof m.data === 'string' ? m.data : m.data.toString());
  if (msg.id && pending.has(msg.id)) {
    const { resolve, reject } = pending.get(msg.id);
    pending.delete(msg.id);
    msg.error ? reject(new Error(msg.error.message)) : resolve(msg.result);
  } else if (msg.method) {
    for (const w of waiters.splice(0)) (w.method === msg.method ? w.resolve(msg) : waiters.push(w));
  }
};
const send = (method, params = {}, sessionId) => new Promise((resolve, reject) => {
  const id = nextId++;
  pending.set(id, { resolve, reject });
  ws.send(JSON.stringify({ id, method, params, sessionId }));
});
const results = [];
function check(name, ok, detail) { results.push({ name, ok, detail }); console.log((ok ? 'PASS ' : 'FAIL ') + name + (ok ? '' : ': ' + detail)); }

ws.onopen = async () => {
  try {
    const { targetId } = await send('Target.createTarget', { url: 'about:blank' });
    const { sessionId } = await send('Target.attachToTarget', { targetId, flatten: true });
    await send('Page.enable', {}, sessionId);
    const loaded = new Promise((resolve) => waiters.push({ method: 'Page.loadEventFired', resolve }));
    await send('Page.navigate', { url: process.env.CDP_TARGET_URL }, sessionId);
    await loaded;
    const evalJS = async (expression) => (await send('Runtime.evaluate', { expression, returnByValue: true }, sessionId)).result.value;
    const title = await evalJS('document.title');
    check('the shop page has its title', title === 'Fixture shop', 'title was ' + JSON.stringify(title));
    if (process.env.ACCEPT_ONLY_PASSING !== '1') {
      const shipping = await evalJS("(document.querySelector('#shipping') || {}).textContent || null");
      check('the shop offers free shipping', shipping === 'Free shipping', 'no #shipping element');
    }
    const shot = await send('Page.captureScreenshot', { format: 'png' }, sessionId);
    fs.mkdirSync('artifacts', { recursive: true });
    fs.writeFileSync('artifacts/home.png', Buffer.from(shot.data, 'base64'));
  } catch (err) {
    check('the acceptance script ran', false, String(err));
  }
  fs.mkdirSync('playwright-report', { recursive: true });
  const rows = results.map((r) => `<li class="${r.ok ? 'pass' : 'fail'}">${r.ok ? 'PASS' : 'FAIL'} ${r.name}</li>`).join('');
  fs.writeFileSync('playwright-report/index.html', `<!doctype html><title>Acceptance</title><ul>${rows}</ul>`);
  ws.close();
  process.exit(results.every((r) => r.ok) ? 0 : 1);
};
ws.onerror = (e) => { console.error('websocket error', e.message || e); process.exit(2); };
