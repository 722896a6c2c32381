// Served on $PORT; its front page shows what the build step wrote (public/built.txt).
const express = require("express");
const fs = require("fs");

const app = express();
const built = fs.readFileSync("public/built.txt", "utf8").trim();
app.get("/", (req, res) => res.type("text").send(`node-app: ${built} (${process.env.NODE_ENV})\n`));
app.listen(Number(process.env.PORT), () => console.log(`node-app listening on ${process.env.PORT}`));
