// The fixture's Playwright demo script: it records what it does into demo-out/. With
// CDP_WS_URL (playwright-demo's screencasting browser) it drives that browser, so the
// run records it as video; otherwise it launches Debian's chromium itself.
const { chromium } = require('@playwright/test');
(async () => {
  const browser = process.env.CDP_WS_URL
    ? await chromium.connectOverCDP(process.env.CDP_WS_URL)
    : await chromium.launch({ executablePath: process.env.CHROME_PATH || '/usr/bin/chromium', args: ['--no-sandbox', '--disable-gpu'] });
  const context = browser.contexts()[0] || (await browser.newContext());
  const page = await context.newPage();
  await page.goto(process.env.BASE_URL);
  console.log('opened ' + (await page.title()));
  await page.click('#inc');
  await page.click('#inc');
  require('fs').mkdirSync('demo-out', { recursive: true });
  await page.screenshot({ path: 'demo-out/after-click.png' });
  console.log('clicked; count is ' + (await page.textContent('#count')));
  await browser.close();
})().catch((e) => { console.error(e); process.exit(1); });
