// Shows which region answered and which deployment it served, from skyhost's headers.
(async () => {
  try {
    const r = await fetch(location.pathname, { method: "HEAD", cache: "no-store" });
    document.getElementById("region").textContent = r.headers.get("x-skyhost-region") || "unknown";
    document.getElementById("deployment").textContent = r.headers.get("x-skyhost-deployment") || "unknown";
  } catch (e) {
    document.getElementById("region").textContent = "unknown";
  }
})();
