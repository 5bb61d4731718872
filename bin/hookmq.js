#!/usr/bin/env node
import { main } from '../dist/plugins/cli/main.js'

main(process.argv.slice(2))
