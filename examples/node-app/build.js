// The `build` script: run on every deploy after the (cached) install.
const fs = require("fs");
fs.mkdirSync("public", { recursive: true });
fs.writeFileSync("public/built.txt", `built with express ${require("express/package.json").version}\n`);
console.log("node-app: built public/built.txt");
