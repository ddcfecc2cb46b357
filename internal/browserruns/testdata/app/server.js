// The fixture web app: a shop page with a counter and an about page.
const http = require('http');
const port = Number(process.env.PORT || 4173);
const shop = `<!doctype html><html><head><meta charset="utf-8"><title>Fixture shop</title>
<style>body{font-family:sans-serif;margin:2rem} button{padding:.5rem 1rem}</style></head>
<body><h1>Fixture shop</h1><p>Count: <span id="count">0</span></p>
<button id="inc" onclick="document.getElementById('count').textContent = String(Number(document.getElementById('count').textContent) + 1)">Add to basket</button>
<p><a id="about" href="/about">About us</a></p></body></html>`;
const about = `<!doctype html><html><head><meta charset="utf-8"><title>About</title></head>
<body><h1>About the shop</h1><p>We sell fixtures.</p><p><a href="/">Back to the shop</a></p></body></html>`;
http.createServer((req, res) => {
  const body = req.url === '/' ? shop : req.url === '/about' ? about : null;
  if (body === null) { res.writeHead(404); res.end('not found'); return; }
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
  res.end(body);
}).listen(port, '127.0.0.1', () => console.log('listening on ' + port));
