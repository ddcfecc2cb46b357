const { test, expect } = require('@playwright/test');

test('home page has the title', async ({ page }) => {
  await page.goto('/');
  await expect(page).toHaveTitle('Fixture shop');
});

test('the counter counts', async ({ page }) => {
  await page.goto('/');
  await page.click('#inc');
  await expect(page.locator('#count')).toHaveText('1');
});
