// The real Mongoose, as the application behind these entities uses it: the seed's schemas,
// its populate paths, toJSON with the `id` virtual and no `__v` or `_id`.
//
// Usage: MONGOOSE_DIR=<folder with node_modules/mongoose> node peer.js <mongodb uri>
// Reads a JSON list of operations on stdin, prints a JSON list of results on stdout.
// Values use Extended JSON ({"$oid": ...}, {"$date": ...}) both ways.
"use strict";

const path = require("path");
const mongoose = require(path.join(process.env.MONGOOSE_DIR, "node_modules", "mongoose"));
const { Schema } = mongoose;
const { ObjectId, Mixed } = Schema.Types;

// The little Extended JSON the tests exchange ($oid, $date, $number*), both ways: the
// `bson` package's EJSON is missing from the bson 1.x that Mongoose 5 uses.
function fromEJSON(value) {
  if (Array.isArray(value)) return value.map(fromEJSON);
  if (value === null || typeof value !== "object") return value;
  const keys = Object.keys(value);
  if (keys.length === 1 && keys[0] === "$oid") return new mongoose.Types.ObjectId(value.$oid);
  if (keys.length === 1 && keys[0] === "$date") {
    const date = value.$date;
    return new Date(typeof date === "object" ? Number(date.$numberLong) : date);
  }
  if (keys.length === 1 && ["$numberInt", "$numberLong", "$numberDouble"].includes(keys[0])) {
    return Number(value[keys[0]]);
  }
  return Object.fromEntries(keys.map((key) => [key, fromEJSON(value[key])]));
}

function toEJSON(value) {
  if (Array.isArray(value)) return value.map(toEJSON);
  if (value instanceof Date) return { $date: { $numberLong: String(value.getTime()) } };
  if (value === null || typeof value !== "object") return value;
  if (/^ObjectI[dD]$/.test(value._bsontype)) return { $oid: value.toHexString() };
  return Object.fromEntries(Object.keys(value).map((key) => [key, toEJSON(value[key])]));
}

const toJSON = {
  virtuals: true,
  versionKey: false,
  transform: (doc, ret) => {
    delete ret._id;
    return ret;
  },
};
const options = { timestamps: true, toJSON };

const Organization = mongoose.model("Organization", new Schema({ name: { type: String, required: true } }, options));
const User = mongoose.model(
  "User",
  new Schema(
    {
      name: { type: String, required: true },
      email: String,
      organization: { type: ObjectId, ref: "Organization" },
    },
    options,
  ),
);
const Input = new Schema(
  {
    inputGroup: Number,
    inputType: String,
    step: Number,
    bot: { type: ObjectId, ref: "Bot" },
    label: String,
    name: String,
    defaultValue: Mixed,
    placeholder: String,
    required: Boolean,
    options: [Mixed],
  },
  { toJSON },
);
const Bot = mongoose.model(
  "Bot",
  new Schema(
    {
      name: { type: String, required: true },
      slug: { type: String, required: true },
      creditCost: Number,
      inputs: [Input],
      promptTemplate: String,
      organization: { type: ObjectId, ref: "Organization" },
    },
    options,
  ),
);
const File = mongoose.model(
  "File",
  new Schema(
    {
      createdBy: { type: ObjectId, ref: "User" },
      fileName: { type: String, required: true },
      s3Key: { type: String, required: true },
      contentType: String,
      size: Number,
      organization: { type: ObjectId, ref: "Organization" },
    },
    options,
  ),
);
const Invoice = mongoose.model(
  "Invoice",
  new Schema(
    {
      organization: { type: ObjectId, ref: "Organization", required: true },
      credits: { type: Number, required: true },
      status: { type: String, required: true },
      reference: String,
    },
    options,
  ),
);
const botRequestFields = {
  images: [{ type: ObjectId, ref: "File" }],
  success: { type: Boolean, required: true },
  relatedRequests: [{ type: ObjectId, ref: "BotRequest" }],
  bot: { type: ObjectId, ref: "Bot", required: true },
  createdBy: { type: ObjectId, ref: "User" },
  organization: { type: ObjectId, ref: "Organization" },
  inputs: { type: Object },
  ip: { type: String, required: true },
  prompt: String,
  response: { type: Mixed, required: true },
  originalRequest: { type: ObjectId, ref: "BotRequest" },
  invoice: { type: ObjectId, ref: "Invoice" },
};
const BotRequest = mongoose.model("BotRequest", new Schema(botRequestFields, options));
// An application whose schema adds fields named as what the service computes (a thread
// item's `depth`, its `feedback` summary): same collection, its own values. (`feedback` is
// a Mixed path as `inputs` is: a nested schema path would make Mongoose's toJSON put it
// first, whatever the stored order.)
const RatedBotRequest = mongoose.model(
  "RatedBotRequest",
  new Schema(
    { ...botRequestFields, feedback: { type: Object }, depth: Number },
    options,
  ),
  "botrequests",
);
const MODELS = { Organization, User, Bot, File, Invoice, BotRequest, RatedBotRequest };
const REQUEST_MODELS = [BotRequest, RatedBotRequest];

// The seed's populate paths (GET /bot-requests/{id} serves these by default).
const POPULATE = [
  { path: "images" },
  {
    path: "bot",
    select: "creditCost inputs name slug",
    populate: { path: "inputs.bot", select: "_id" },
  },
  { path: "createdBy", select: "name" },
  { path: "organization", select: "name" },
  { path: "invoice" },
];

async function run(op) {
  const Model = MODELS[op.model || "BotRequest"];
  const id = op.id ? fromEJSON(op.id) : undefined;
  switch (op.op) {
    case "create": {
      const doc = await Model.create(fromEJSON(op.doc));
      return { id: String(doc._id) };
    }
    case "json": {
      let query = Model.findById(id);
      if (op.populate !== false && REQUEST_MODELS.includes(Model)) query = query.populate(POPULATE);
      // A bot's inputs name their bot, served as the seed serves them: `{"id": ...}`.
      if (op.populate !== false && Model === Bot) query = query.populate(POPULATE[1].populate);
      const doc = await query;
      return doc === null ? null : doc.toJSON();
    }
    case "validate": {
      const doc = await Model.findById(id);
      if (doc === null) return { found: false };
      const error = doc.validateSync();
      return { found: true, errors: error ? Object.keys(error.errors) : [] };
    }
    case "followup": {
      // As the application records a follow-up: create, then push + save on the original.
      const child = await Model.create(Object.assign(fromEJSON(op.doc), { originalRequest: id }));
      const parent = await Model.findById(id);
      parent.relatedRequests.push(child._id);
      await parent.save();
      return { id: String(child._id) };
    }
    case "set-and-save": {
      // Load, change paths, save: what Mongoose writes for a document it did not create.
      const doc = await Model.findById(id);
      for (const [key, value] of Object.entries(fromEJSON(op.set))) {
        doc.set(key, value);
      }
      await doc.save();
      return { v: doc.__v };
    }
    case "stale-save": {
      // A document loaded earlier (its stored form then, `snapshot`), whose array is then
      // rewritten: Mongoose's versioning must refuse it (VersionError) if the array
      // changed meanwhile, instead of overwriting that change.
      const doc = Model.hydrate(fromEJSON(op.snapshot));
      doc.set(op.path, fromEJSON(op.value));
      try {
        await doc.save();
        return { saved: true };
      } catch (error) {
        return { saved: false, error: error.name };
      }
    }
    case "raw": {
      const doc = await Model.collection.findOne({ _id: id });
      return toEJSON(doc);
    }
    default:
      throw new Error(`unknown op ${op.op}`);
  }
}

async function main() {
  const input = await new Promise((resolve) => {
    let text = "";
    process.stdin.on("data", (chunk) => (text += chunk));
    process.stdin.on("end", () => resolve(text));
  });
  await mongoose.connect(process.argv[2], { serverSelectionTimeoutMS: 10000, autoIndex: false });
  const results = [];
  try {
    for (const op of JSON.parse(input)) results.push(await run(op));
  } finally {
    await mongoose.disconnect();
  }
  process.stdout.write(JSON.stringify({ version: mongoose.version, results }));
}

main().catch((error) => {
  process.stderr.write(String(error && error.stack ? error.stack : error));
  process.exit(1);
});
