const { test, expect } = require('@playwright/test');

test('checkout shows the basket', async ({ page }) => {
  await page.goto('/');
  await expect(page.locator('h1')).toHaveText('Fixture shop');
});

// Deliberately failing: the page never says this.
test('checkout offers free shipping', async ({ page }) => {
  await page.goto('/');
  await expect(page.locator('#shipping')).toHaveText('Free shipping', { timeout: 2000 });
});
