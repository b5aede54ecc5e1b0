// The browser half of TestBrowser: Debian's chromium, headless, through the same
// origin as the app (Envoy in front of Better Auth and the backend). It prints one
// JSON line of results; the Go test asserts on them. Screenshots go to $SHOTS.
//
// Environment: CHROMIUM, APP (the app's origin), EVIL (another origin), SHOTS,
// BOB_UUID (another user's uuid).
import { chromium } from "playwright-core";

const { CHROMIUM, APP, EVIL, SHOTS, BOB_UUID } = process.env;
const out = {};
const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
try {
  const page = await (await browser.newContext()).newPage();
  const shot = (name) => page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });

  // 1. A protected page without a session: sent to sign-in, with the page to come back to.
  await page.goto(`${APP}/app`);
  out.redirectedTo = new URL(page.url()).pathname + new URL(page.url()).search;
  await shot("1-redirected-to-sign-in");

  // 2. Sign up with Better Auth (the page's form), then back on /app: the page reads
  // the session and lists its tasks with fetch(), cookies only, no token code.
  await page.fill("#email", `browser-${Date.now()}@example.test`);
  await page.fill("#password", "correct-horse-battery");
  await page.click("#sign-up");
  await page.waitForURL(`${APP}/app`);
  await page.waitForSelector("#tasks[data-status]");
  out.ownTasks = Number(await page.getAttribute("#tasks", "data-status"));
  out.uuid = await page.getAttribute("#tasks", "data-uuid");
  await shot("2-own-tasks");

  // 3. Another user's tasks, from the same page.
  out.othersTasks = await page.evaluate(async (uuid) => (await fetch(`/api/${uuid}/tasks`)).status, BOB_UUID);
  await page.evaluate((s) => { document.querySelector("#others").textContent = `Bob's tasks: ${s}`; }, out.othersTasks);
  await shot("3-others-tasks-forbidden");

  // 4. A form on another site posts to the app with the user's cookies.
  await page.goto(`${EVIL}/attack?target=${encodeURIComponent(`${APP}/api/${out.uuid}/tasks`)}`);
  await page.waitForLoadState("load");
  await page.waitForURL((u) => u.toString().startsWith(APP));
  out.crossSiteBody = (await page.textContent("body")) ?? "";
  await shot("4-cross-site-post-refused");

  // 5. Sign out: the same page can no longer read the tasks.
  await page.goto(`${APP}/app`);
  await page.waitForSelector("#tasks[data-status]");
  out.afterSignOut = await page.evaluate(async (uuid) => {
    await fetch("/api/auth/sign-out", { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    return (await fetch(`/api/${uuid}/tasks`)).status;
  }, out.uuid);
  await page.evaluate((s) => { document.querySelector("#others").textContent = `after sign-out: ${s}`; }, out.afterSignOut);
  await shot("5-signed-out");
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
