// The fixture's Playwright demo script: it records what it does into demo-out/.
const { chromium } = require('@playwright/test');
(async () => {
  const browser = await chromium.launch({ executablePath: process.env.CHROME_PATH || '/usr/bin/chromium', args: ['--no-sandbox', '--disable-gpu'] });
  const page = await browser.newPage();
  await page.goto(process.env.BASE_URL);
  console.log('opened ' + (await page.title()));
  await page.click('#inc');
  require('fs').mkdirSync('demo-out', { recursive: true });
  await page.screenshot({ path: 'demo-out/after-click.png' });
  console.log('clicked; count is ' + (await page.textContent('#count')));
  await browser.close();
})().catch((e) => { console.error(e); process.exit(1); });
